"""Google Gemini generateContent / streamGenerateContent: contents and parts, inline and file data for
images, video and audio, systemInstruction, generationConfig with thinkingConfig."""

import mimetypes
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tasks.relay.providers.base import (
    Relay,
    UpstreamRequest,
    chunk,
    completion,
    content_filtered,
    data_uri_parts,
    malformed,
    usage,
)

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}  # anything else (SAFETY, RECITATION...) is a filter
DEFAULT_MIME = {
    "image_url": "image/jpeg",
    "video_url": "video/mp4",
    "audio_url": "audio/mpeg",
    "file_url": "application/pdf",
}
DYNAMIC_THINKING = -1  # let the model choose its thinking budget


class GeminiRelay(Relay):
    def url(self, model: str, *, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.upstream.base_url.rstrip('/')}/v1beta/models/{model}:{method}"

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.upstream.api_key}

    def body(self, request: UpstreamRequest) -> dict[str, Any]:
        system = [m for m in request.messages if m["role"] in ("system", "developer")]
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m["role"] == "assistant" else "user", "parts": _parts(m["content"])}
                for m in request.messages
                if m["role"] not in ("system", "developer")
            ]
        }
        if system:
            body["systemInstruction"] = {"parts": [p for m in system for p in _parts(m["content"])]}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if "top_p" in request.extra:
            config["topP"] = request.extra["top_p"]
        if "stop" in request.extra:
            stop = request.extra["stop"]
            config["stopSequences"] = [stop] if isinstance(stop, str) else stop
        if request.reasoning is True:
            config["thinkingConfig"] = {"thinkingBudget": DYNAMIC_THINKING, "includeThoughts": True}
        elif request.reasoning is False:
            config["thinkingConfig"] = {"thinkingBudget": 0}
        if config:
            body["generationConfig"] = config
        return body

    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        answer = await self.post_json(
            self.url(request.model, stream=False), headers=self.headers(), body=self.body(request)
        )
        candidate = _candidate(answer)
        parts = candidate.get("content", {}).get("parts", [])
        return completion(
            model=answer.get("modelVersion") or request.model,
            content="".join(p.get("text", "") for p in parts if not p.get("thought")),
            reasoning="".join(p.get("text", "") for p in parts if p.get("thought")),
            finish_reason=FINISH_REASONS.get(candidate.get("finishReason"), "stop"),
            usage=_usage(answer.get("usageMetadata", {})),
            response_id=answer.get("responseId", ""),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = request.model
        metadata: dict[str, Any] = {}
        url = self.url(request.model, stream=True)
        async with self.post_events(url, headers=self.headers(), body=self.body(request)) as events:
            first = True
            async for _, answer in events:
                candidate = _candidate(answer)
                model = answer.get("modelVersion") or model
                metadata = answer.get("usageMetadata") or metadata
                for part in candidate.get("content", {}).get("parts", []):
                    key = "reasoning_content" if part.get("thought") else "content"
                    delta = {key: part.get("text", "")} | ({"role": "assistant"} if first else {})
                    first = False
                    yield chunk(chunk_id=chunk_id, model=model, delta=delta)
                if candidate.get("finishReason"):
                    reason = FINISH_REASONS.get(candidate["finishReason"], "content_filter")
                    yield chunk(chunk_id=chunk_id, model=model, delta={}, finish_reason=reason)
        yield chunk(chunk_id=chunk_id, model=model, usage=_usage(metadata))

    def refused_credentials(self, response: httpx.Response) -> bool:
        # Gemini answers a wrong key with 400 INVALID_ARGUMENT and the reason API_KEY_INVALID.
        return response.status_code == 400 and "API_KEY_INVALID" in response.text

    def error_message(self, response: httpx.Response) -> str:
        try:
            error = response.json()
            error = error[0] if isinstance(error, list) else error
            return str(error["error"]["message"])[:300]
        except (ValueError, KeyError, TypeError, IndexError):
            return super().error_message(response)


def _candidate(answer: dict[str, Any]) -> dict[str, Any]:
    blocked = (answer.get("promptFeedback") or {}).get("blockReason")
    if blocked:
        raise content_filtered(f"Gemini blocked the prompt: {blocked}")
    candidates = answer.get("candidates")
    if not candidates:
        if "usageMetadata" in answer:
            return {}  # a stream's closing usage-only event
        raise malformed("no candidates")
    candidate = candidates[0]
    reason = candidate.get("finishReason")
    if reason and reason not in FINISH_REASONS and not candidate.get("content", {}).get("parts"):
        raise content_filtered(f"Gemini withheld the answer: {reason}")
    return candidate


def _usage(metadata: dict[str, Any]) -> dict[str, Any]:
    """Gemini counts thinking apart from the answer; OpenAI's completion tokens include reasoning."""
    thoughts = metadata.get("thoughtsTokenCount") or 0
    return usage(
        prompt_tokens=metadata.get("promptTokenCount") or 0,
        completion_tokens=(metadata.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=metadata.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for part in content:
        if part["type"] == "text":
            parts.append({"text": part["text"]})
            continue
        url = part[part["type"]]["url"]
        inline = data_uri_parts(url)
        if inline:
            parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
        else:
            mime = mimetypes.guess_type(url.split("?")[0])[0] or DEFAULT_MIME[part["type"]]
            parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
    return parts
