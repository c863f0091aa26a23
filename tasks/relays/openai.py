"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, OpenRouter, DeepSeek and the like."""

import time
from typing import Any

from tasks.relays.base import Relay, UpstreamError, UpstreamRequest


class OpenAIRelay(Relay):
    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": request.messages, **request.extra}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"Authorization": f"Bearer {self.upstream.api_key}"} if self.upstream.api_key else {}
        answer = await self.post_json(
            f"{self.upstream.base_url.rstrip('/')}/chat/completions", headers=headers, body=body
        )
        return chat_completion(answer, request.model)


def chat_completion(answer: Any, model: str) -> dict[str, Any]:
    """The upstream's answer as a complete `chat.completion`, or an error if it is not one."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices, list):
        raise UpstreamError("upstream answer has no choices", code="upstream_error", retryable=True)
    usage = answer.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    return {
        **answer,
        "id": answer.get("id") or f"chatcmpl-{int(time.time() * 1000)}",
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
