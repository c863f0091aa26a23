"""Fake Gemini provider speaking the Generative Language API (v1beta) wire format.

The default answer is the OpenAI fake's echo of the last user turn (``"Echo: <text>"`` plus
``" [images: N]"``), with ``" [video: N]"`` and ``" [audio: N]"`` for the video and audio parts it
carried, so tests can prove which media reached Gemini. Token counts are deterministic: 4 characters
of text a token plus a flat price per media part, one word of reply a token, and one word of the
thought a thinking token. Tools and structured output are the fakes' shared behaviour
(foxgate/fakes/tools.py): a call is a ``functionCall`` part (sent whole, in one chunk of a stream,
with finishReason STOP), a ``functionResponse`` part is the result it reads.

Requests are parsed the way Google's proto-JSON front end does it: camelCase and snake_case field
names both work, unknown fields and mistyped values are rejected, and ``null`` means unset.

Standalone: ``python -m foxgate.fakes.gemini --port 8901 [--latency 0.2]``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import mimetypes
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .openai import (
    DEFAULT_MODEL,
    EMBEDDING_DIMENSIONS,
    STREAM_ERROR_STATUS,
    content_text,
    echo,
    embedding_vector,
    split_reply,
    truncate_words,
)
from .server import FakeProviderServer, FakeRequestHandler, InvalidRequest, Route, run_cli
from .tools import Tool, example, pick, structured_reply, tool_result_reply

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1beta."
ROLES = ("user", "model")
THINKING_LEVELS = ("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH")
MAX_OUTPUT_TOKENS = 65536
MAX_CANDIDATES = 8
MAX_THINKING_BUDGET = 32768
THOUGHT_PREFIX = "Thinking about:"
# Flat prompt tokens per media part, since the fake never decodes media: Gemini's price for a small
# image or a PDF page, and for one second of video or audio.
MEDIA_TOKENS = {"IMAGE": 258, "VIDEO": 263, "AUDIO": 32, "DOCUMENT": 258}
FILE_URI_SCHEMES = ("https", "http", "gs")
YOUTUBE = re.compile(r"https?://(www\.|m\.)?(youtube\.com|youtu\.be)/")
MIME_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")

# Google's canonical status and Gemini's stock message per HTTP status.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    ),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


class FakeGemini(FakeProviderServer):
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``, ``GET /v1beta/models``.

    ``v1`` paths work too. Streams are server-sent events with ``?alt=sse`` (what the SDKs ask
    for), else one JSON array written element by element, as Google does.
    """

    provider_name = "gemini"
    api_base_path = ""  # the SDK takes the server root and adds the API version itself

    def presented_api_key(self, exchange: FakeRequestHandler) -> str | None:
        """The ``x-goog-api-key`` header, else the ``key`` query parameter."""
        header = exchange.headers.get("x-goog-api-key")
        if header is not None:
            return header.strip()
        keys = parse_qs(urlsplit(exchange.path).query).get("key")
        return keys[0] if keys else None

    def error_body(self, status: int, message: str | None = None, param: str | None = None) -> Any:
        """Google's error body; ``param`` adds a BadRequest field violation ("" for one without a field)."""
        code, stock_message = ERRORS.get(status, ("UNKNOWN", "Unknown error."))
        error: dict[str, Any] = {"code": status, "message": message or stock_message, "status": code}
        details: list[dict[str, Any]] = []
        if param is not None:
            violation = {**({"field": param} if param else {}), "description": error["message"]}
            details.append(
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
            )
        if message is None and status == 401:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if message is None and status == 429:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                }
            )
            if self.knobs.retry_after is not None:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{self.knobs.retry_after:g}s",
                    }
                )
        if details:
            error["details"] = details
        return {"error": error}

    def generate_content(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        answer = self._answer(exchange, match)
        parts = [{"text": answer.text}] if answer.text else []
        if answer.call is not None:
            parts = [{"functionCall": answer.call}]
        if answer.thought is not None:
            parts.insert(0, {"text": answer.thought, "thought": True})
        # Google drops empty fields: a reply cut to nothing comes back as a content without parts.
        content = {"parts": parts, "role": "model"} if parts else {"role": "model"}
        candidates = [
            {"content": content, "finishReason": answer.finish_reason, "index": index}
            for index in range(answer.candidates)
        ]
        payload = {"candidates": candidates, "usageMetadata": answer.usage(answer.output), **answer.head}
        exchange.send_json(200, payload)

    def stream_generate_content(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        answer = self._answer(exchange, match)
        knobs = exchange.knobs
        sse = parse_qs(urlsplit(exchange.path).query).get("alt") == ["sse"]
        opened = False

        def send_raw(data: str) -> None:
            nonlocal opened
            if sse:
                exchange.send_event(data)
            else:
                exchange.write_chunk(f"{',' if opened else '['}\r\n{data}\n".encode())
            opened = True

        def send_chunk(part: dict[str, Any], text_so_far: str, finish: str | None = None) -> None:
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
            if finish is not None:
                candidate["finishReason"] = finish
            candidates = [{**candidate, "index": index} for index in range(answer.candidates)]
            # Every chunk carries the usage so far, as Gemini's do: clients must not add them up.
            usage = answer.usage(text_so_far)
            send_raw(json.dumps({"candidates": candidates, "usageMetadata": usage, **answer.head}))

        exchange.start_stream("text/event-stream" if sse else "application/json; charset=UTF-8")
        if not self.sleep(knobs.time_to_first_token):
            exchange.drop_connection()
            return
        if answer.thought is not None:
            # Like OpenAI's role chunk, the thought leads the stream and is not a content chunk.
            send_chunk({"text": answer.thought, "thought": True}, "")
        if answer.call is not None:
            # Gemini sends a function call whole, in one chunk, with the finish reason.
            send_chunk({"functionCall": answer.call}, answer.output, answer.finish_reason)
            if not sse:
                exchange.write_chunk(b"]")
            exchange.end_stream()
            return
        # An empty reply still needs one chunk to carry the finish reason.
        pieces = split_reply(answer.text, knobs.chunk_count) or [""]
        count, ending = knobs.stream_ending(len(pieces))
        text_so_far = ""
        for index, piece in enumerate(pieces[:count]):
            if index and not self.sleep(knobs.chunk_interval):
                exchange.drop_connection()
                return
            text_so_far += piece
            # Gemini's last text chunk carries the finishReason; a cut or error stream never has one.
            last = ending == "finish" and index == len(pieces) - 1
            send_chunk({"text": piece}, text_so_far, answer.finish_reason if last else None)
        if ending == "cut":
            exchange.drop_connection()
            return
        if ending == "error":
            # Google reports a failure mid-stream as one more element: its error body.
            send_raw(json.dumps(self.error_body(STREAM_ERROR_STATUS)))
        if not sse:
            exchange.write_chunk(b"]")
        exchange.end_stream()

    def batch_embed_contents(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        """One deterministic vector per request's text (the OpenAI fake's), ``outputDimensionality``
        long; like Gemini, no token count."""
        body = exchange.body
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("* BatchEmbedContentsRequest.requests: contents is not specified")
        embeddings = []
        for index, request in enumerate(requests):
            parts = (request.get("content") or {}).get("parts") or []
            text = "".join(part.get("text", "") for part in parts)
            if not text:
                raise InvalidRequest(
                    f"* BatchEmbedContentsRequest.requests[{index}].content: contents is not specified"
                )
            dimensions = request.get("outputDimensionality") or EMBEDDING_DIMENSIONS
            embeddings.append({"values": embedding_vector(text, dimensions)})
        exchange.send_json(200, {"embeddings": embeddings})

    def requested_models(self) -> list[str]:
        """The models named in the paths of the requests received so far, each once, in order."""
        found = (re.search(r"/models/(?P<model>[^/:?]+):", entry["path"]) for entry in self.requests)
        return list(dict.fromkeys(match["model"] for match in found if match))

    def list_models(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        models = [
            {
                "name": f"models/{model}",
                "version": "001",
                "displayName": model,
                "description": "A fake Gemini model that echoes the last user turn.",
                "inputTokenLimit": 1048576,
                "outputTokenLimit": MAX_OUTPUT_TOKENS,
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
                "temperature": 1,
                "maxTemperature": 2,
                "topP": 0.95,
                "topK": 64,
                "thinking": True,
            }
            for model in dict.fromkeys([DEFAULT_MODEL, *self.requested_models()])
        ]
        exchange.send_json(200, {"models": models})

    def _answer(self, exchange: FakeRequestHandler, match: re.Match[str]) -> Answer:
        request = parse_generate_request(exchange.raw_body, exchange.body)
        config = request.get("generationConfig", {})
        last_user = _openai_view(_last_user(request))
        call = function_call(request)
        text = exchange.knobs.reply if exchange.knobs.reply is not None else reply_text(request, last_user)
        if call is not None:
            text = ""
        for stop in config.get("stopSequences", []):
            if stop and stop in text:
                text = text[: text.index(stop)]
        reply, finish = truncate_words(text, config.get("maxOutputTokens"))
        thinking = config.get("thinkingConfig", {})
        thought = think(content_text(last_user["content"]), thinking)
        return Answer(
            text=reply,
            finish_reason="MAX_TOKENS" if finish == "length" else "STOP",
            thought=thought if thinking.get("includeThoughts") else None,
            call=call,
            thoughts_tokens=len(thought.split()) if thought is not None else 0,
            prompt_tokens=count_prompt_tokens(request),
            candidates=config.get("candidateCount", 1),
            head={"modelVersion": match["model"], "responseId": _response_id()},
        )

    routes = (
        Route("POST", r"/v1(?:beta)?/models/(?P<model>[^/:]+):generateContent", generate_content),
        Route(
            "POST", r"/v1(?:beta)?/models/(?P<model>[^/:]+):streamGenerateContent", stream_generate_content
        ),
        Route("POST", r"/v1(?:beta)?/models/(?P<model>[^/:]+):batchEmbedContents", batch_embed_contents),
        Route("GET", r"/v1(?:beta)?/models", list_models),
    )


@dataclass(frozen=True)
class Answer:
    """What the fake model says to one request, and what it bills."""

    text: str
    finish_reason: str
    thought: str | None
    """The thought summary to show, or None unless includeThoughts asked for it."""
    thoughts_tokens: int
    prompt_tokens: dict[str, int]
    """Prompt tokens per modality (TEXT, IMAGE, VIDEO, AUDIO, DOCUMENT)."""
    candidates: int
    head: dict[str, str]
    """modelVersion and responseId, the same on every chunk of a stream."""
    call: dict[str, Any] | None = None
    """The functionCall the model makes instead of a text reply."""

    @property
    def output(self) -> str:
        """What the model generated, as the text its output tokens are counted from."""
        return json.dumps(self.call["args"]) if self.call is not None else self.text

    def usage(self, text: str) -> dict[str, Any]:
        """usageMetadata once ``text`` of the reply has been generated."""
        prompt = sum(self.prompt_tokens.values())
        output = self.candidates * len(text.split())
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output + self.thoughts_tokens,
            "promptTokensDetails": [
                {"modality": modality, "tokenCount": count}
                for modality, count in self.prompt_tokens.items()
                if count
            ],
            "thoughtsTokenCount": self.thoughts_tokens,
        }
        # Proto JSON leaves out zeros: no candidatesTokenCount before (or without) any reply text.
        return {name: value for name, value in usage.items() if value}


def function_call(request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The call the fake model makes (foxgate/fakes/tools.py), as Gemini's functionCall, or None."""
    tools = [
        Tool(
            declaration["name"],
            declaration.get("parametersJsonSchema") or declaration.get("parameters") or {},
        )
        for tool in request.get("tools", [])
        for declaration in tool.get("functionDeclarations") or tool.get("function_declarations") or []
    ]
    config = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = str(config.get("mode", "AUTO")).upper()
    allowed = config.get("allowedFunctionNames") or []
    tool = pick(
        tools,
        forced=(allowed[0] if allowed else True) if mode == "ANY" else None,
        never=mode == "NONE",
        answered=bool(_function_responses(request["contents"][-1])),
        last_user_text=content_text(_openai_view(_last_user(request))["content"]),
    )
    return None if tool is None else {"name": tool.name, "args": example(tool.schema)}


def _function_responses(content: Mapping[str, Any]) -> list[str]:
    """What each functionResponse part of a content says: its `result`, or its whole response as JSON."""
    responses = [
        part["functionResponse"].get("response") or {}
        for part in content.get("parts", [])
        if "functionResponse" in part
    ]
    return [str(r["result"]) if set(r) == {"result"} else json.dumps(r) for r in responses]


def _last_user(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((c for c in reversed(request["contents"]) if (c.get("role") or "user") == "user"), {})


def reply_text(request: Mapping[str, Any], last_user: dict[str, Any]) -> str:
    """What the fake model says: what the functions returned, the JSON asked for, or the echo."""
    results = _function_responses(request["contents"][-1])
    if results:
        return tool_result_reply(results)
    config = request.get("generationConfig", {})
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        return structured_reply(schema, content_text(last_user["content"]))
    return _echo(last_user)


def think(user_text: str, thinking_config: Mapping[str, Any]) -> str | None:
    """The deterministic thought, or None when the request does not make the model think.

    The model thinks when asked to in any way (includeThoughts, a budget, a level) unless the
    budget is 0; a positive budget caps the thought at that many words (tokens).
    """
    budget = thinking_config.get("thinkingBudget")
    level = thinking_config.get("thinkingLevel", THINKING_LEVELS[0])
    asked = thinking_config.get("includeThoughts") or budget is not None or level != THINKING_LEVELS[0]
    if not asked or budget == 0:
        return None
    thought, _ = truncate_words(
        f"{THOUGHT_PREFIX} {user_text}".strip(), budget if budget and budget > 0 else None
    )
    return thought


def count_prompt_tokens(request: Mapping[str, Any]) -> dict[str, int]:
    """Prompt tokens per modality: 4 characters of text a token, plus a flat price per media part."""
    contents = [
        *request["contents"],
        *([request["systemInstruction"]] if "systemInstruction" in request else []),
    ]
    parts = [part for content in contents for part in content.get("parts", [])]
    chars = sum(len(part["text"]) for part in parts if "text" in part)
    tokens = {"TEXT": math.ceil(chars / 4)} | dict.fromkeys(MEDIA_TOKENS, 0)
    for part in parts:
        modality = _modality(part)
        if modality in MEDIA_TOKENS:
            tokens[modality] += MEDIA_TOKENS[modality]
    return tokens


def _modality(part: Mapping[str, Any]) -> str | None:
    """IMAGE, VIDEO, AUDIO or DOCUMENT for a media part, from its MIME type or else its file URI."""
    media = part.get("inlineData") or part.get("fileData")
    if media is None:
        return None
    mime_type = media.get("mimeType")
    uri = media.get("fileUri", "")
    if not mime_type and YOUTUBE.match(uri):
        mime_type = "video/*"
    if not mime_type:
        mime_type, _ = mimetypes.guess_type(urlsplit(uri).path)
    kind = (mime_type or "").partition("/")[0].upper()
    return kind if kind in ("IMAGE", "VIDEO", "AUDIO") else "DOCUMENT"


def _openai_view(content: Mapping[str, Any]) -> dict[str, Any]:
    """A Gemini content as an OpenAI user message, so the OpenAI fake's echo applies unchanged."""
    kinds = {"IMAGE": "image_url", "VIDEO": "video_url", "AUDIO": "input_audio", "DOCUMENT": "file"}
    parts: list[dict[str, Any]] = []
    for part in content.get("parts", []):
        if "text" in part and not part.get("thought"):
            parts.append({"type": "text", "text": part["text"]})
        elif (modality := _modality(part)) is not None:
            parts.append({"type": kinds[modality]})
    return {"role": "user", "content": parts}


def _echo(last_user: dict[str, Any]) -> str:
    reply = echo([last_user])
    for kind, label in (("video_url", "video"), ("input_audio", "audio")):
        count = sum(1 for part in last_user["content"] if part["type"] == kind)
        if count:
            reply += f" [{label}: {count}]"
    return reply


def _response_id() -> str:
    """Gemini's response ids are 23 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()[:23]


# --- Request parsing: a small model of the proto-JSON schema Google parses requests with. ---


@dataclass(frozen=True)
class _Scalar:
    label: str
    """The proto type Google names in "Invalid value" errors."""
    accepts: Callable[[Any], bool]


@dataclass(frozen=True)
class _Repeated:
    item: Any


@dataclass(frozen=True)
class _Enum:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class _Message:
    name: str
    fields: Mapping[str, Any] | None = None
    """camelCase field name -> field type; None accepts any object (parts of the API not modelled)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_base64(value: Any) -> bool:
    # Proto JSON takes standard and URL-safe base64, padded or not.
    if not isinstance(value, str):
        return False
    normalized = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except binascii.Error:
        return False
    return True


_FLOAT = _Scalar("TYPE_FLOAT", _is_number)
_INT32 = _Scalar("TYPE_INT32", lambda value: isinstance(value, int) and not isinstance(value, bool))
_BOOL = _Scalar("TYPE_BOOL", lambda value: isinstance(value, bool))
_STRING = _Scalar("TYPE_STRING", lambda value: isinstance(value, str))
_BYTES = _Scalar("TYPE_BYTES", _is_base64)
_VALUE = _Scalar("google.protobuf.Value", lambda value: True)

_PART_DATA = {
    "text": _STRING,
    "inlineData": _Message("Blob", {"mimeType": _STRING, "data": _BYTES}),
    "fileData": _Message("FileData", {"mimeType": _STRING, "fileUri": _STRING}),
    "functionCall": _Message("FunctionCall"),
    "functionResponse": _Message("FunctionResponse"),
    "executableCode": _Message("ExecutableCode"),
    "codeExecutionResult": _Message("CodeExecutionResult"),
    "toolCall": _Message("ToolCall"),
    "toolResponse": _Message("ToolResponse"),
}
_PART = _Message(
    "Part",
    {
        **_PART_DATA,
        "thought": _BOOL,
        "thoughtSignature": _BYTES,
        "videoMetadata": _Message("VideoMetadata"),
        "mediaResolution": _Message("MediaResolution"),
        "partMetadata": _Message("google.protobuf.Struct"),
    },
)
_CONTENT = _Message("Content", {"parts": _Repeated(_PART), "role": _STRING})
_THINKING_CONFIG = _Message(
    "ThinkingConfig",
    {
        "includeThoughts": _BOOL,
        "thinkingBudget": _INT32,
        "thinkingLevel": _Enum("ThinkingConfig.ThinkingLevel", THINKING_LEVELS),
    },
)
_GENERATION_CONFIG = _Message(
    "GenerationConfig",
    {
        "stopSequences": _Repeated(_STRING),
        "responseMimeType": _STRING,
        "responseSchema": _Message("Schema"),
        "responseJsonSchema": _VALUE,
        "responseModalities": _Repeated(_STRING),
        "candidateCount": _INT32,
        "maxOutputTokens": _INT32,
        "temperature": _FLOAT,
        "topP": _FLOAT,
        "topK": _INT32,
        "seed": _INT32,
        "presencePenalty": _FLOAT,
        "frequencyPenalty": _FLOAT,
        "responseLogprobs": _BOOL,
        "logprobs": _INT32,
        "enableEnhancedCivicAnswers": _BOOL,
        "speechConfig": _Message("SpeechConfig"),
        "thinkingConfig": _THINKING_CONFIG,
        "imageConfig": _Message("ImageConfig"),
        "mediaResolution": _STRING,
        "audioTranscriptionConfig": _Message("AudioTranscriptionConfig"),
    },
)
_REQUEST = _Message(
    "GenerateContentRequest",
    {
        "model": _STRING,
        "contents": _Repeated(_CONTENT),
        "systemInstruction": _CONTENT,
        "generationConfig": _GENERATION_CONFIG,
        "safetySettings": _Repeated(_Message("SafetySetting")),
        "tools": _Repeated(_Message("Tool")),
        "toolConfig": _Message("ToolConfig"),
        "cachedContent": _STRING,
        "labels": _Message("google.protobuf.Struct"),
        "serviceTier": _STRING,
        "store": _BOOL,
        "continuationToken": _STRING,
    },
)

# Google's range errors; the upper bound is exclusive, hence the odd-looking 2.0001.
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2.0001),
    "topP": (0, 1.0001),
    "maxOutputTokens": (1, MAX_OUTPUT_TOKENS + 1),
    "candidateCount": (1, MAX_CANDIDATES + 1),
    "presencePenalty": (-2, 2),
    "frequencyPenalty": (-2, 2),
}


def parse_generate_request(raw_body: bytes, body: Any) -> dict[str, Any]:
    """Validate a GenerateContentRequest like Gemini does; return it with camelCase names and no nulls."""
    if body is None and raw_body.strip():
        raise InvalidRequest("Invalid JSON payload received. Unexpected token.", "")
    if body is not None and not isinstance(body, dict):
        raise InvalidRequest(
            'Invalid JSON payload received. Unknown name "": Root element must be a message.', ""
        )
    request = _parse(body or {}, _REQUEST, "")
    if not request.get("contents"):
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified\n")
    for index, content in enumerate(request["contents"]):
        _check_content(content, f"contents[{index}]")
    if "systemInstruction" in request:
        _check_content(request["systemInstruction"], "system_instruction", check_role=False)
    _check_generation_config(request.get("generationConfig", {}))
    return request


def _parse(value: Any, kind: Any, path: str) -> Any:
    match kind:
        case _Message(fields=None):
            if not isinstance(value, dict):
                raise _invalid_value(path, TYPE_PREFIX + kind.name, value)
            return value
        case _Message(fields=fields):
            if not isinstance(value, dict):
                raise _invalid_value(path, TYPE_PREFIX + kind.name, value)
            parsed: dict[str, Any] = {}
            for key, item in value.items():
                name = _field_name(fields, key)
                if name is None:
                    where = f" at '{path}'" if path else ""
                    raise InvalidRequest(
                        f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.',
                        path,
                    )
                if item is not None:
                    parsed[name] = _parse(item, fields[name], f"{path}.{_snake(name)}".lstrip("."))
            return parsed
        case _Repeated(item=item_kind):
            if not isinstance(value, list):
                raise _invalid_value(path, _label(item_kind), value)
            return [_parse(item, item_kind, f"{path}[{index}]") for index, item in enumerate(value)]
        case _Enum(values=values):
            if isinstance(value, str) and value.upper() in values:
                return value.upper()
            raise _invalid_value(path, TYPE_PREFIX + kind.name, value)
        case _Scalar():
            if not kind.accepts(value):
                raise _invalid_value(path, kind.label, value)
            return value
    raise TypeError(f"unknown field type {kind!r}")


def _field_name(fields: Mapping[str, Any], key: str) -> str | None:
    """The camelCase name of ``key``, which may be spelled either way, or None if unknown."""
    if key in fields:
        return key
    camel = re.sub(r"_([a-z0-9])", lambda found: found[1].upper(), key)
    return camel if camel in fields and _snake(camel) == key else None


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda found: "_" + found[1].lower(), name)


def _label(kind: Any) -> str:
    match kind:
        case _Scalar(label=label):
            return label
        case _Repeated(item=item):
            return _label(item)
        case _:
            return TYPE_PREFIX + kind.name


def _invalid_value(path: str, label: str, value: Any) -> InvalidRequest:
    if label == _BYTES.label and isinstance(value, str):
        return InvalidRequest(
            f"Invalid value at '{path}' ({label}), Base64 decoding failed for \"{value}\"", path
        )
    return InvalidRequest(f"Invalid value at '{path}' ({label}), {json.dumps(value)}", path)


def _check_content(content: Mapping[str, Any], path: str, check_role: bool = True) -> None:
    role = content.get("role")
    if check_role and role and role not in ROLES:
        raise InvalidRequest(f"Please use a valid role: {', '.join(ROLES)}.")
    if not content.get("parts"):
        raise InvalidRequest(f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty.\n")
    for index, part in enumerate(content["parts"]):
        _check_part(part, f"{path}.parts[{index}]")


def _check_part(part: Mapping[str, Any], path: str) -> None:
    data = [name for name in part if name in _PART_DATA]
    if not data:
        raise InvalidRequest(
            f"* GenerateContentRequest.{path}.data: "
            "required oneof field 'data' must have one initialized field\n"
        )
    if len(data) > 1:
        raise InvalidRequest(
            f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{data[1]}'", path
        )
    if "inlineData" in part:
        for name in ("mimeType", "data"):
            if not part["inlineData"].get(name):
                raise InvalidRequest(
                    f"* GenerateContentRequest.{path}.inline_data.{_snake(name)}: required field is not set\n"
                )
        _check_mime_type(part["inlineData"]["mimeType"])
    if "fileData" in part:
        uri = part["fileData"].get("fileUri")
        if not uri:
            raise InvalidRequest(
                f"* GenerateContentRequest.{path}.file_data.file_uri: required field is not set\n"
            )
        target = urlsplit(uri)
        if target.scheme not in FILE_URI_SCHEMES or not target.netloc:
            raise InvalidRequest(f"Unsupported file uri: {uri}")
        if part["fileData"].get("mimeType"):
            _check_mime_type(part["fileData"]["mimeType"])


def _check_mime_type(mime_type: str) -> None:
    if not MIME_TYPE.fullmatch(mime_type):
        raise InvalidRequest(f"Unsupported MIME type: {mime_type}")


def _check_generation_config(config: Mapping[str, Any]) -> None:
    for name, (low, high) in _RANGES.items():
        value = config.get(name)
        if value is not None and not low <= value < high:
            raise InvalidRequest(
                f"Unable to submit request because it has a {name} value of {value:g} but the supported "
                f"range is from {low:g} (inclusive) to {high:g} (exclusive). Update the value and try again."
            )
    thinking = config.get("thinkingConfig", {})
    budget = thinking.get("thinkingBudget")
    if budget is not None and thinking.get("thinkingLevel", THINKING_LEVELS[0]) != THINKING_LEVELS[0]:
        raise InvalidRequest("You can only set only one of thinking budget and thinking level.")
    if budget is not None and not -1 <= budget <= MAX_THINKING_BUDGET:
        raise InvalidRequest(
            f"The thinking budget {budget} is invalid. "
            f"Please choose a value between -1 and {MAX_THINKING_BUDGET}."
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(FakeGemini, argv)


if __name__ == "__main__":
    sys.exit(main())
