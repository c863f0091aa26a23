"""What the OpenAI and Anthropic dialects answer: a task's result and its stream in their formats.

The task itself is always the FoxAPI one, its result an OpenAI ChatCompletion and its stream OpenAI
chat.completion.chunks (tasks/streaming.py); each dialect renders them as its own clients expect."""

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tasks.models import Task
from tasks.streaming import TaskChunks

# OpenAI's finish_reason -> Anthropic's stop_reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# The error type Anthropic's clients read, by HTTP status
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    410: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


async def chat_completion_events(task_id: str, *, include_usage: bool) -> AsyncIterator[str]:
    """The task's stream as OpenAI streams a chat completion: `data:` lines of chunks, then
    `data: [DONE]`; a failure is a last `data:` line holding OpenAI's error object. Usage comes only
    when the caller asked for it (`stream_options.include_usage`), on the usage-only last chunk."""
    chunks = TaskChunks(task_id, offset=0)
    async for seq, data in chunks:
        if seq is None:
            yield data
            continue
        if not include_usage and '"usage"' in data:
            chunk = json.loads(data)
            chunk.pop("usage", None)
            if not chunk.get("choices"):
                continue  # the usage-only chunk
            data = json.dumps(chunk, separators=(",", ":"))
        yield f"data: {data}\n\n"
    task = chunks.finished
    if task.status != Task.Status.COMPLETED:
        error = {"message": task.error_message, "type": "task_error", "code": task.error_code, "param": None}
        yield f"data: {json.dumps({'error': error})}\n\n"
    yield "data: [DONE]\n\n"


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {
        "type": "error",
        "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message},
    }


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage as Anthropic counts it: cache reads and writes apart from the input."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    split = usage.get("cache_creation") or {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0) - cached - written,
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written - split.get("ephemeral_1h_input_tokens", 0),
            "ephemeral_1h_input_tokens": split.get("ephemeral_1h_input_tokens", 0),
        },
    }


def anthropic_message(completion: dict[str, Any], *, task_id: str, model: str) -> dict[str, Any]:
    """A task's ChatCompletion as Anthropic's Message: its thinking, its text, then a tool_use block per
    tool call."""
    choice = completion["choices"][0]
    text = choice["message"].get("content") or ""
    content = _thinking(choice["message"])
    content += [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": _input(call)}
        for call in choice["message"].get("tool_calls") or []
    ]
    return {
        "id": anthropic_message_id(task_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage") or {}),
    }


def _thinking(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An answer's thinking blocks: Claude's as it signed them; another provider's reasoning as one
    unsigned block (which goes back to that provider as nothing, and to Claude not at all)."""
    if message.get("thinking_blocks"):
        return list(message["thinking_blocks"])
    if message.get("reasoning_content"):
        return [{"type": "thinking", "thinking": message["reasoning_content"], "signature": ""}]
    return []


def _input(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as tool_use input; what is not a JSON object (a model's slip) as {}."""
    try:
        arguments = json.loads(call["function"]["arguments"] or "{}")
    except ValueError:
        return {}
    return arguments if isinstance(arguments, dict) else {}


def anthropic_message_id(task_id: str) -> str:
    return "msg_" + task_id.removeprefix("task-llmrouter-").replace("-", "_")


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"


class _Blocks:
    """The content blocks of an Anthropic stream, opened and closed as a chunk's deltas change kind: a
    thinking block for reasoning (thinking_delta events, closed by its signature_delta), a text block for
    text, a tool_use block for each tool call, its arguments as input_json_delta."""

    def __init__(self) -> None:
        self.count = 0
        self.open: tuple[str, int] | None = None  # ("thinking" or "text", -1) or ("tool", call index)

    def close(self) -> Iterator[str]:
        if self.open is not None:
            yield _event("content_block_stop", {"index": self.count - 1})
            self.open = None

    def start(self, kind: tuple[str, int], block: dict[str, Any]) -> Iterator[str]:
        yield from self.close()
        yield _event("content_block_start", {"index": self.count, "content_block": block})
        self.open = kind
        self.count += 1

    def delta(self, delta: dict[str, Any]) -> Iterator[str]:
        yield from self.thinking(delta)
        if delta.get("content"):
            if self.open != ("text", -1):
                yield from self.start(("text", -1), {"type": "text", "text": ""})
            text = {"type": "text_delta", "text": delta["content"]}
            yield _event("content_block_delta", {"index": self.count - 1, "delta": text})
        for call in delta.get("tool_calls") or []:
            kind = ("tool", call.get("index", 0))
            if self.open != kind:
                function = call.get("function") or {}
                block = {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", "")}
                yield from self.start(kind, block | {"input": {}})
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                partial = {"type": "input_json_delta", "partial_json": arguments}
                yield _event("content_block_delta", {"index": self.count - 1, "delta": partial})

    def thinking(self, delta: dict[str, Any]) -> Iterator[str]:
        if delta.get("reasoning_content"):
            if self.open != ("thinking", -1):
                yield from self.start(("thinking", -1), {"type": "thinking", "thinking": "", "signature": ""})
            thought = {"type": "thinking_delta", "thinking": delta["reasoning_content"]}
            yield _event("content_block_delta", {"index": self.count - 1, "delta": thought})
        for block in delta.get("thinking_blocks") or []:
            if block["type"] == "redacted_thinking":
                yield from self.start(("redacted", -1), block)
                yield from self.close()
            elif self.open == ("thinking", -1):
                signature = {"type": "signature_delta", "signature": block.get("signature", "")}
                yield _event("content_block_delta", {"index": self.count - 1, "delta": signature})
                yield from self.close()


async def anthropic_message_events(task_id: str, *, model: str) -> AsyncIterator[str]:
    """The task's stream as Anthropic streams a Message: message_start, its content blocks (thinking blocks
    of thinking_delta events, a text block of text_delta events, a tool_use block of input_json_delta
    events per tool call), message_delta with
    the stop reason and the usage, message_stop; a failure is an `error` event instead of the closing
    ones."""
    start = anthropic_message({"choices": [{"message": {}}], "usage": {}}, task_id=task_id, model=model)
    yield _event("message_start", {"message": {**start, "stop_reason": None}})
    chunks = TaskChunks(task_id, offset=0)
    blocks = _Blocks()
    finish_reason, usage = "stop", {}
    async for seq, data in chunks:
        if seq is None:
            yield _event("ping", {})
            continue
        chunk = json.loads(data)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            finish_reason = choice.get("finish_reason") or finish_reason
            for event in blocks.delta(choice.get("delta") or {}):
                yield event
    task = chunks.finished
    if task.status != Task.Status.COMPLETED:
        yield _event("error", {"error": {"type": "api_error", "message": task.error_message}})
        return
    for event in blocks.close():
        yield event
    stop = {"stop_reason": STOP_REASONS.get(finish_reason, "end_turn"), "stop_sequence": None}
    yield _event("message_delta", {"delta": stop, "usage": anthropic_usage(usage)})
    yield _event("message_stop", {})
