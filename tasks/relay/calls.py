"""The outcome of one upstream call, and the assembly of a streamed answer into a ChatCompletion."""

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tasks.relay.providers import UpstreamError

T = TypeVar("T")
CHARS_PER_TOKEN = 4  # to estimate delivered output when a broken stream reported no usage


CANCELLED = UpstreamError("The task was cancelled during this call.", code="cancelled", retryable=False)


class Cancel:
    """A running task's cancel request, as its generation sees it.

    The request interrupts the generation only while it waits on its upstream (`upstream`), where
    cancelling the wait closes the upstream connection; anywhere else (a statement in flight, whose
    interruption would leave a shared connection mid-query) it is only noted, and the generation looks
    at `requested` when that step is done."""

    __slots__ = ("requested", "waiting")

    def __init__(self, *, requested: bool = False) -> None:
        self.requested = requested
        self.waiting: asyncio.Task | None = None

    def request(self) -> None:
        if not self.requested:
            self.requested = True
            if self.waiting is not None:
                self.waiting.cancel()

    async def upstream(self, awaitable: Awaitable[T]) -> T | None:
        """What `awaitable` (a read from the upstream, or a pause) gives, or None if the request came
        while it waited: the wait is then cancelled, and with it the upstream call's connection."""
        self.waiting = asyncio.current_task()
        try:
            return await awaitable
        except asyncio.CancelledError:
            if not self.requested:
                raise  # a drain's, not ours
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return None
        finally:
            self.waiting = None


@dataclass
class CallOutcome:
    """What one upstream call produced: a completion, or an error, and for streams what reached clients."""

    completion: dict[str, Any] | None = None
    error: UpstreamError | None = None
    usage: dict[str, Any] | None = None  # as the provider reported it, if it did
    delivered_tokens: int = 0  # streamed output already in clients' hands (estimated)
    first_token_ms: int | None = None


@dataclass
class StreamAssembly:
    """Accumulates `chat.completion.chunk`s into the ChatCompletion they add up to."""

    started: float
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    chunk_id: str = ""
    model: str = ""
    created: int = 0
    first_token_ms: int | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # by the stream's call index
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)  # Claude's, signed
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # of the content's tokens, when asked for

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunk_id = self.chunk_id or chunk.get("id", "")
        self.model = self.model or chunk.get("model", "")
        self.created = self.created or chunk.get("created", 0)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            thought = delta.get("reasoning_content") or ""
            calls = delta.get("tool_calls") or []
            if (text or thought or calls) and self.first_token_ms is None:
                self.first_token_ms = round((time.monotonic() - self.started) * 1000)
            self.content.append(text)
            self.reasoning.append(thought)
            for call in calls:
                self.add_tool_call(call)
            self.add_thinking(thought, delta.get("thinking_blocks") or [])
            self.logprobs += (choice.get("logprobs") or {}).get("content") or []
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def add_tool_call(self, delta: dict[str, Any]) -> None:
        """A tool call's delta: the first of a call brings its id and name, every one a piece of its
        arguments."""
        call = self.tool_calls.setdefault(
            delta.get("index", len(self.tool_calls)),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        call["id"] = call["id"] or delta.get("id") or ""
        function = delta.get("function") or {}
        call["function"]["name"] = call["function"]["name"] or function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def add_thinking(self, thought: str, blocks: list[dict[str, Any]]) -> None:
        """Thinking as blocks: its text extends the open thinking block, a signature closes that block,
        a redacted block stands alone."""
        last = self.thinking_blocks[-1] if self.thinking_blocks else {}
        if thought:
            if last.get("type") != "thinking" or last["signature"]:
                last = {"type": "thinking", "thinking": "", "signature": ""}
                self.thinking_blocks.append(last)
            last["thinking"] += thought
        for block in blocks:
            if block["type"] == "thinking" and last.get("type") == "thinking" and not last["signature"]:
                last["signature"] = block.get("signature", "")
            else:
                self.thinking_blocks.append(dict(block))

    @property
    def tokens(self) -> int:
        """Output delivered so far, estimated from its length."""
        arguments = [call["function"]["arguments"] for call in self.tool_calls.values()]
        delivered = (*self.content, *self.reasoning, *arguments)
        return math.ceil(sum(len(part) for part in delivered) / CHARS_PER_TOKEN)

    def outcome(self, error: UpstreamError | None) -> CallOutcome:
        base = {"usage": self.usage, "delivered_tokens": self.tokens, "first_token_ms": self.first_token_ms}
        if error is not None:
            return CallOutcome(error=error, **base)
        text = "".join(self.content)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if self.tool_calls:
            message["content"] = text or None
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        if any(self.reasoning):
            message["reasoning_content"] = "".join(self.reasoning)
        if any(block.get("signature") or block.get("data") for block in self.thinking_blocks):
            message["thinking_blocks"] = self.thinking_blocks  # Claude's, to be sent back to it
        completion = {
            "id": self.chunk_id,
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": {"content": self.logprobs, "refusal": None} if self.logprobs else None,
                    "finish_reason": self.finish_reason or "stop",
                }
            ],
            "usage": self.usage
            or {"prompt_tokens": 0, "completion_tokens": self.tokens, "total_tokens": self.tokens},
        }
        return CallOutcome(completion=completion, **base)
