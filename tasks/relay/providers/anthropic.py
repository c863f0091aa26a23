"""Anthropic Messages: system prompt as `system`, images as `image` blocks, reasoning as extended thinking."""

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
    usage,
)

API_VERSION = "2023-06-01"
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for budget_tokens
MAX_THINKING_BUDGET = 16_000
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
        max_tokens = request.max_tokens or request.default_max_tokens
        system = [m["content"] for m in request.messages if m["role"] in ("system", "developer")]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": [_message(m) for m in request.messages if m["role"] not in ("system", "developer")],
        }
        if system:
            body["system"] = "\n\n".join(_text_of(content) for content in system)
        budget = min(MAX_THINKING_BUDGET, max_tokens // 2)
        thinking = bool(request.reasoning) and budget >= MIN_THINKING_BUDGET
        if thinking:
            # Thinking spends part of max_tokens; Anthropic refuses a temperature beside it.
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        elif request.temperature is not None:
            body["temperature"] = request.temperature
        if "top_p" in request.extra and not thinking:
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
            finish_reason=FINISH_REASONS.get(answer.get("stop_reason"), "stop"),
            usage=anthropic_usage(answer["usage"], answer["usage"].get("output_tokens", 0)),
            response_id=answer.get("id", ""),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = request.model
        started: dict[str, Any] = {}
        async with self.post_events(
            self.url, headers=self.headers(), body=self.body(request, stream=True)
        ) as events:
            async for event, data in events:
                kind = data.get("type", event)
                if kind == "message_start":
                    started = data.get("message", {}).get("usage", {})
                    model = data.get("message", {}).get("model") or model
                    yield chunk(chunk_id=chunk_id, model=model, delta={"role": "assistant", "content": ""})
                elif kind == "content_block_delta":
                    delta = data.get("delta", {})
                    if delta.get("type") == "text_delta":
                        yield chunk(chunk_id=chunk_id, model=model, delta={"content": delta.get("text", "")})
                    elif delta.get("type") == "thinking_delta":
                        yield chunk(
                            chunk_id=chunk_id,
                            model=model,
                            delta={"reasoning_content": delta.get("thinking", "")},
                        )
                elif kind == "message_delta":
                    reason = FINISH_REASONS.get(data.get("delta", {}).get("stop_reason"), "stop")
                    yield chunk(chunk_id=chunk_id, model=model, delta={}, finish_reason=reason)
                    output_tokens = data.get("usage", {}).get("output_tokens", 0)
                    yield chunk(chunk_id=chunk_id, model=model, usage=anthropic_usage(started, output_tokens))
                elif kind == "error":
                    raise self._stream_error(data.get("error", {}))
                # ping, content_block_start/stop and message_stop carry nothing a chunk needs

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
    return usage(
        prompt_tokens=(start.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=output_tokens,
        cached_tokens=cache_read,
    ) | {"cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}


def _text_of(content: str | list[dict[str, Any]]) -> str:
    return content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    return {"role": message["role"], "content": [_block(part) for part in content]}


def _block(part: dict[str, Any]) -> dict[str, Any]:
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
