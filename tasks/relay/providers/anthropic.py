"""Anthropic Messages: system prompt as `system`, images as `image` blocks, reasoning as extended thinking
(the caller's own thinking settings when /v1/messages gave them), an answer's signed thinking blocks kept
for the turns after it, tools as `tools` and tool calls as `tool_use` / `tool_result` blocks, structured
output as `output_config.format`."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tasks.relay.providers.base import (
    Relay,
    UpstreamError,
    UpstreamRequest,
    chunk,
    completion,
    data_uri_parts,
    error_for_status,
    malformed,
    text_of,
    tool_arguments,
    tool_call,
    usage,
)

API_VERSION = "2023-06-01"
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for budget_tokens
MAX_THINKING_BUDGET = 16_000
THINKING_BLOCKS = ("thinking", "redacted_thinking")
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


class AnthropicRelay(Relay):
    @property
    def url(self) -> str:
        return f"{self.upstream.base_url.rstrip('/')}/v1/messages"

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.upstream.api_key, "anthropic-version": API_VERSION}

    def body(self, request: UpstreamRequest, *, stream: bool) -> dict[str, Any]:
        self.logprobs_refused(request)
        max_tokens = request.max_tokens or request.default_max_tokens
        system = [m["content"] for m in request.messages if m["role"] in ("system", "developer")]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": _messages(request.messages),
        }
        if system:
            body["system"] = _system(system)
        body |= _tools(request.extra)
        thinking = _thinking(request, max_tokens)
        if thinking is not None:
            body["thinking"] = thinking
        thinks = thinking is not None and thinking["type"] != "disabled"
        # Anthropic refuses a temperature or a top_p beside thinking.
        if request.temperature is not None and not thinks:
            body["temperature"] = request.temperature
        if "top_p" in request.extra and not thinks:
            body["top_p"] = request.extra["top_p"]
        if "stop" in request.extra:
            stop = request.extra["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        answer = await self.post_json(self.url, headers=self.headers(), body=self.body(request, stream=False))
        blocks = answer.get("content")
        if not isinstance(blocks, list) or "usage" not in answer:
            raise malformed("no content or usage")
        return completion(
            model=answer.get("model") or request.model,
            content="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
            reasoning="".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking"),
            thinking_blocks=[_thinking_block(b) for b in blocks if b.get("type") in THINKING_BLOCKS],
            tool_calls=[
                tool_call(b.get("id", ""), b.get("name", ""), b.get("input") or {})
                for b in blocks
                if b.get("type") == "tool_use"
            ],
            finish_reason=FINISH_REASONS.get(answer.get("stop_reason"), "stop"),
            usage=anthropic_usage(answer["usage"], answer["usage"].get("output_tokens", 0)),
            response_id=answer.get("id", ""),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = request.model
        started: dict[str, Any] = {}
        calls: dict[int, int] = {}  # content block index -> tool call index
        async with self.post_events(
            self.url, headers=self.headers(), body=self.body(request, stream=True)
        ) as events:
            async for event, data in events:
                kind = data.get("type", event)
                if kind == "message_start":
                    started = data.get("message", {}).get("usage", {})
                    model = data.get("message", {}).get("model") or model
                    yield chunk(chunk_id=chunk_id, model=model, delta={"role": "assistant", "content": ""})
                elif kind in ("content_block_start", "content_block_delta"):
                    delta = _block_delta(kind, data, calls)
                    if delta is not None:
                        yield chunk(chunk_id=chunk_id, model=model, delta=delta)
                elif kind == "message_delta":
                    reason = FINISH_REASONS.get(data.get("delta", {}).get("stop_reason"), "stop")
                    yield chunk(chunk_id=chunk_id, model=model, delta={}, finish_reason=reason)
                    output_tokens = data.get("usage", {}).get("output_tokens", 0)
                    yield chunk(chunk_id=chunk_id, model=model, usage=anthropic_usage(started, output_tokens))
                elif kind == "error":
                    raise self._stream_error(data.get("error", {}))
                # ping, content_block_stop and message_stop carry nothing a chunk needs

    def _stream_error(self, error: dict[str, Any]) -> UpstreamError:
        status = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}.get(
            error.get("type"), 500
        )
        return error_for_status(status, self.redact(str(error.get("message", error))))

    def error_message(self, response: httpx.Response) -> str:
        try:
            return str(response.json()["error"]["message"])[:300]
        except (ValueError, KeyError, TypeError):
            return super().error_message(response)


def anthropic_usage(start: dict[str, Any], output_tokens: int) -> dict[str, Any]:
    """Anthropic counts cached input apart from input; OpenAI's prompt tokens include it."""
    cache_read = start.get("cache_read_input_tokens") or 0
    cache_write = start.get("cache_creation_input_tokens") or 0
    split = start.get("cache_creation") or {}
    return usage(
        prompt_tokens=(start.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=output_tokens,
        cached_tokens=cache_read,
    ) | {
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        # the writes by the cache's lifetime, priced apart (tasks/settle.py)
        "cache_creation": {
            "ephemeral_5m_input_tokens": split.get("ephemeral_5m_input_tokens") or 0,
            "ephemeral_1h_input_tokens": split.get("ephemeral_1h_input_tokens") or 0,
        },
    }


def _system(contents: list[str | list[dict[str, Any]]]) -> str | list[dict[str, Any]]:
    """The system prompt: one string, or text blocks where a part marks a cache breakpoint."""
    parts = [part for content in contents if not isinstance(content, str) for part in content]
    if not any("cache_control" in part for part in parts):
        return "\n\n".join(text_of(content) for content in contents)
    blocks = []
    for content in contents:
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            blocks.append(_cached({"type": "text", "text": part["text"]}, part))
    return blocks


def _cached(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """The block with the part's cache breakpoint, if it marks one."""
    return block | {"cache_control": part["cache_control"]} if "cache_control" in part else block


def _block_delta(kind: str, data: dict[str, Any], calls: dict[int, int]) -> dict[str, Any] | None:
    """A content block's start or delta as a chunk's delta: text, thinking, or a tool call (opened by
    its block's start, its arguments streamed as input_json_delta); None for what a chunk does not carry.
    `calls` numbers the tool_use blocks, as OpenAI numbers a stream's tool calls."""
    index = data.get("index", 0)
    if kind == "content_block_start":
        block = data.get("content_block", {})
        if block.get("type") == "redacted_thinking":
            return {"thinking_blocks": [_thinking_block(block)]}
        if block.get("type") != "tool_use":
            return None
        calls[index] = len(calls)
        opening = tool_call(block.get("id", ""), block.get("name", ""), "")
        return {"tool_calls": [{"index": calls[index], **opening}]}
    delta = data.get("delta", {})
    if delta.get("type") == "text_delta":
        return {"content": delta.get("text", "")}
    if delta.get("type") == "thinking_delta":
        return {"reasoning_content": delta.get("thinking", "")}
    if delta.get("type") == "signature_delta":
        # the signature closes the thinking block whose text the reasoning_content deltas carried
        return {
            "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": delta.get("signature", "")}]
        }
    if delta.get("type") == "input_json_delta" and index in calls:
        arguments = {"arguments": delta.get("partial_json", "")}
        return {"tool_calls": [{"index": calls[index], "function": arguments}]}
    return None


def _thinking(request: UpstreamRequest, max_tokens: int) -> dict[str, Any] | None:
    """The caller's thinking settings as sent (/v1/messages); else `reasoning: true` as a budget of half
    the output, if that reaches Anthropic's floor. Thinking spends part of max_tokens."""
    if request.thinking is not None:
        return request.thinking
    budget = min(MAX_THINKING_BUDGET, max_tokens // 2)
    if request.reasoning and budget >= MIN_THINKING_BUDGET:
        return {"type": "enabled", "budget_tokens": budget}
    return None


def _thinking_block(block: dict[str, Any]) -> dict[str, Any]:
    """A thinking or redacted_thinking block of an answer, with the fields Claude needs to read it again."""
    if block["type"] == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return {
        "type": "thinking",
        "thinking": block.get("thinking", ""),
        "signature": block.get("signature", ""),
    }


def _thought(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An assistant's thinking blocks, which lead its turn as Claude wrote them. Thinking without a
    signature (another provider's reasoning) cannot go back to Claude, which would refuse it."""
    blocks = message.get("thinking_blocks") or []
    return [block for block in blocks if block.get("signature") or block["type"] == "redacted_thinking"]


def _tools(parameters: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's tools, tool_choice, parallel_tool_calls and response_format in Anthropic's terms."""
    body: dict[str, Any] = {}
    if "tools" in parameters:
        body["tools"] = [
            {
                "name": tool["function"]["name"],
                **({"description": d} if (d := tool["function"].get("description")) else {}),
                "input_schema": tool["function"].get("parameters") or {"type": "object", "properties": {}},
                **({"cache_control": tool["cache_control"]} if "cache_control" in tool else {}),
            }
            for tool in parameters["tools"]
        ]
    choice = parameters.get("tool_choice")
    if isinstance(choice, dict):
        body["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice is not None:
        body["tool_choice"] = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    if parameters.get("parallel_tool_calls") is False and body.get("tool_choice", {}).get("type") != "none":
        body["tool_choice"] = body.get("tool_choice", {"type": "auto"}) | {"disable_parallel_tool_use": True}
    response_format = parameters.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    elif response_format.get("type") == "json_object":
        body["output_config"] = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    return body


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation after the system prompt: an assistant's tool calls as its tool_use blocks, the
    tool messages answering them as one user message of tool_result blocks."""
    turns: list[dict[str, Any]] = []
    answering = False  # the last turn is the tool results answering the calls before it
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            continue
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": text_of(message["content"]),
            }
            if answering:
                turns[-1]["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
            answering = True
            continue
        answering = False
        if message.get("tool_calls"):
            text = text_of(message["content"])
            uses = [
                {"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": tool_arguments(c)}
                for c in message["tool_calls"]
            ]
            said = [{"type": "text", "text": text}] if text else []
            turns.append({"role": "assistant", "content": _thought(message) + said + uses})
            continue
        turns.append(_message(message))
    return turns


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content, thought = message["content"], _thought(message)
    if isinstance(content, str):
        if not thought:
            return {"role": message["role"], "content": content}
        content = [{"type": "text", "text": content}] if content else []
    return {"role": message["role"], "content": thought + [_block(part) for part in content]}


def _block(part: dict[str, Any]) -> dict[str, Any]:
    return _cached(_content_block(part), part)


def _content_block(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    if part["type"] == "image_url":
        url = part["image_url"]["url"]
        inline = data_uri_parts(url)
        if inline:
            return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    if part["type"] == "file_url":
        url = part["file_url"]["url"]
        inline = data_uri_parts(url)
        if inline:
            return {
                "type": "document",
                "source": {"type": "base64", "media_type": inline[0], "data": inline[1]},
            }
        return {"type": "document", "source": {"type": "url", "url": url}}
    # Model rules keep video and audio away from Claude: reaching here is a bug in the rules.
    raise UpstreamError(
        f"Anthropic does not take {part['type']} parts", code="upstream_rejected", retryable=False
    )
