"""Google Gemini generateContent / streamGenerateContent: contents and parts, inline and file data for
images, video and audio, systemInstruction, generationConfig with thinkingConfig; tools as
functionDeclarations, tool calls as functionCall and functionResponse parts, structured output as a
JSON response with its schema."""

import json
import math
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
    embeddings,
    malformed,
    text_of,
    tool_arguments,
    tool_call,
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
CHARS_PER_TOKEN = 4
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Gemini 3 wants a function call's thoughtSignature back with the call; OpenAI clients send back only
# the call's id, so the signature rides in the id, after this separator.
SIGNATURE_SEPARATOR = "__ts__"
# OpenAI's chat parameter -> its generationConfig name
GENERATION_PARAMETERS = {
    "top_p": "topP",
    "frequency_penalty": "frequencyPenalty",
    "presence_penalty": "presencePenalty",
    "seed": "seed",
}


class GeminiRelay(Relay):
    def url(self, model: str, *, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.upstream.base_url.rstrip('/')}/v1beta/models/{model}:{method}"

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.upstream.api_key}

    def body(self, request: UpstreamRequest) -> dict[str, Any]:
        self.logprobs_refused(request)
        system = [m for m in request.messages if m["role"] in ("system", "developer")]
        body: dict[str, Any] = {"contents": _contents(request.messages)}
        if system:
            body["systemInstruction"] = {"parts": [p for m in system for p in _parts(m["content"])]}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        parameters = request.extra
        config |= {GENERATION_PARAMETERS[k]: v for k, v in parameters.items() if k in GENERATION_PARAMETERS}
        if "stop" in parameters:
            stop = parameters["stop"]
            config["stopSequences"] = [stop] if isinstance(stop, str) else stop
        if request.reasoning is True:
            # Anthropic's budget, when a /v1/messages caller set one, is Gemini's too
            budget = (request.thinking or {}).get("budget_tokens", DYNAMIC_THINKING)
            config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
        elif request.reasoning is False:
            config["thinkingConfig"] = {"thinkingBudget": 0}
        response_format = parameters.get("response_format") or {}
        if response_format.get("type") in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                config["responseJsonSchema"] = schema
        if config:
            body["generationConfig"] = config
        return body | _tools(parameters)

    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        answer = await self.post_json(
            self.url(request.model, stream=False), headers=self.headers(), body=self.body(request)
        )
        candidate = _candidate(answer)
        parts = candidate.get("content", {}).get("parts", [])
        calls = [_tool_call(part) for part in parts if "functionCall" in part]
        return completion(
            model=answer.get("modelVersion") or request.model,
            content="".join(p.get("text", "") for p in parts if not p.get("thought")),
            reasoning="".join(p.get("text", "") for p in parts if p.get("thought")),
            tool_calls=calls,
            finish_reason=_finish_reason(candidate.get("finishReason"), calls=bool(calls)) or "stop",
            usage=_usage(answer.get("usageMetadata", {})),
            response_id=answer.get("responseId", ""),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = request.model
        metadata: dict[str, Any] = {}
        url = self.url(request.model, stream=True)
        calls = 0
        async with self.post_events(url, headers=self.headers(), body=self.body(request)) as events:
            first = True
            async for _, answer in events:
                candidate = _candidate(answer)
                model = answer.get("modelVersion") or model
                metadata = answer.get("usageMetadata") or metadata
                for part in candidate.get("content", {}).get("parts", []):
                    if "functionCall" in part:
                        # Gemini sends a call whole, in one part: one delta with all its arguments
                        delta: dict[str, Any] = {"tool_calls": [{"index": calls, **_tool_call(part)}]}
                        calls += 1
                    else:
                        key = "reasoning_content" if part.get("thought") else "content"
                        delta = {key: part.get("text", "")}
                    delta |= {"role": "assistant"} if first else {}
                    first = False
                    yield chunk(chunk_id=chunk_id, model=model, delta=delta)
                reason = _finish_reason(candidate.get("finishReason"), calls=calls > 0)
                if reason:
                    yield chunk(chunk_id=chunk_id, model=model, delta={}, finish_reason=reason)
        yield chunk(chunk_id=chunk_id, model=model, usage=_usage(metadata))

    async def embed(self, request: UpstreamRequest) -> dict[str, Any]:
        """batchEmbedContents, one request per input. Gemini reports no token count for embeddings: the
        input is counted as the fakes and the estimate count text, 4 characters a token."""
        texts = [m["content"] for m in request.messages]
        model = f"models/{request.model}"
        requests = [
            {"model": model, "content": {"parts": [{"text": text}]}}
            | ({"outputDimensionality": request.extra["dimensions"]} if "dimensions" in request.extra else {})
            for text in texts
        ]
        url = f"{self.upstream.base_url.rstrip('/')}/v1beta/{model}:batchEmbedContents"
        answer = await self.post_json(url, headers=self.headers(), body={"requests": requests})
        vectors = [item.get("values") for item in answer.get("embeddings") or []]
        if len(vectors) != len(texts) or not all(isinstance(v, list) for v in vectors):
            raise malformed("not one embedding per input")
        return embeddings(
            request.model,
            vectors,
            prompt_tokens=sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts),
            encoding_format=request.extra.get("encoding_format", "float"),
        )

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


def _finish_reason(reason: str | None, *, calls: bool) -> str | None:
    """OpenAI's finish_reason for Gemini's; Gemini ends a turn that calls functions with STOP."""
    if not reason:
        return None
    if calls and reason == "STOP":
        return "tool_calls"
    return FINISH_REASONS.get(reason, "content_filter")


def _tool_call(part: dict[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
    if part.get("thoughtSignature"):
        call_id += SIGNATURE_SEPARATOR + part["thoughtSignature"]
    return tool_call(call_id, call.get("name", ""), call.get("args") or {})


def _tools(parameters: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's tools and tool_choice as functionDeclarations and a functionCallingConfig. Gemini has no
    switch for parallel calls: parallel_tool_calls is a preference it cannot be told."""
    body: dict[str, Any] = {}
    if "tools" in parameters:
        declarations = []
        for tool in parameters["tools"]:
            function = tool["function"]
            declaration = {"name": function["name"]}
            if function.get("description"):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parametersJsonSchema"] = function["parameters"]
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = parameters.get("tool_choice")
    if isinstance(choice, dict):
        config = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
        body["toolConfig"] = {"functionCallingConfig": config}
    elif choice is not None:
        body["toolConfig"] = {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    return body


def _contents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation after the system prompt: an assistant's tool calls as functionCall parts, the
    tool messages answering them as one user turn of functionResponse parts (named by the call they
    answer, as Gemini matches them)."""
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    answering = False  # the last content is the function responses answering the calls before it
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            continue
        if role == "tool":
            text = text_of(message["content"])
            try:
                response = json.loads(text)
            except ValueError:
                response = None
            if not isinstance(response, dict):
                response = {"result": text}
            name = names.get(message["tool_call_id"], "")
            part = {"functionResponse": {"name": name, "response": response}}
            if answering:
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            answering = True
            continue
        answering = False
        parts = _parts(message["content"]) if message["content"] else []
        for call in message.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
            part = {"functionCall": {"name": call["function"]["name"], "args": tool_arguments(call)}}
            _, _, signature = call["id"].partition(SIGNATURE_SEPARATOR)
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    return contents


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
