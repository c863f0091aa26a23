"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, OpenRouter, DeepSeek and the like.

The normalized request already is OpenAI's `messages`; video, audio and file parts go as the
`video_url` / `audio_url` / `file_url` parts that vLLM and OpenRouter take."""

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tasks.relay.providers.base import Relay, UpstreamRequest, content_filtered, malformed

REASONING_EFFORT = "medium"  # what `reasoning: true` asks of models that take reasoning_effort


class OpenAIRelay(Relay):
    def body(self, request: UpstreamRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": without_anthropic_fields(request.messages),
            **request.extra,
        }
        if "tools" in body:
            body["tools"] = without_anthropic_fields(body["tools"])
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.reasoning:
            body["reasoning_effort"] = REASONING_EFFORT
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return body

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.upstream.api_key}"} if self.upstream.api_key else {}

    @property
    def url(self) -> str:
        return f"{self.upstream.base_url.rstrip('/')}/chat/completions"

    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        answer = await self.post_json(self.url, headers=self.headers(), body=self.body(request, stream=False))
        return chat_completion(answer, request.model)

    async def embed(self, request: UpstreamRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "input": [m["content"] for m in request.messages],
            "encoding_format": request.extra.get("encoding_format", "float"),
        }
        if "dimensions" in request.extra:
            body["dimensions"] = request.extra["dimensions"]
        url = f"{self.upstream.base_url.rstrip('/')}/embeddings"
        answer = await self.post_json(url, headers=self.headers(), body=body)
        if not isinstance(answer.get("data"), list) or "usage" not in answer:
            raise malformed("no embeddings or usage")
        prompt_tokens = int(answer["usage"].get("prompt_tokens") or 0)
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return {**answer, "object": "list", "model": answer.get("model") or request.model, "usage": usage}

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        async with self.post_events(
            self.url, headers=self.headers(), body=self.body(request, stream=True)
        ) as events:
            async for _, data in events:
                if "error" in data:
                    raise malformed(self.redact(str(data["error"].get("message", data["error"]))))
                yield {**data, "object": "chat.completion.chunk", "model": data.get("model") or request.model}


def without_anthropic_fields(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages (their content parts) or tools without what only Anthropic reads: cache breakpoints
    (OpenAI-compatible servers cache prompts by themselves) and Claude's signed thinking blocks. Some
    servers refuse a field they do not know."""
    return [_without_anthropic_fields(item) for item in items]


def _without_anthropic_fields(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    if isinstance(content, list) and any("cache_control" in part for part in content):
        item = {
            **item,
            "content": [{k: v for k, v in part.items() if k != "cache_control"} for part in content],
        }
    if "cache_control" in item or "thinking_blocks" in item:
        item = {k: v for k, v in item.items() if k not in ("cache_control", "thinking_blocks")}
    return item


def chat_completion(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """The upstream's answer as a complete `chat.completion`, or an error if it is not one."""
    choices = answer.get("choices")
    if not choices or not isinstance(choices, list):
        raise malformed("no choices")
    if choices[0].get("finish_reason") == "content_filter" and not (choices[0].get("message") or {}).get(
        "content"
    ):
        raise content_filtered("the upstream's content filter withheld the answer")
    usage = answer.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    return {
        **answer,
        "id": answer.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(answer.get("created") or time.time()),
        "model": answer.get("model") or model,
        "choices": choices,
        "usage": {
            **usage,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": int(usage.get("total_tokens") or prompt_tokens + completion_tokens),
        },
    }
