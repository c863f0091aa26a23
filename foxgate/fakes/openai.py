"""Fake OpenAI provider speaking the real Chat Completions wire format.

The default answer echoes the last user message (``"Echo: <text>"`` plus ``" [images: N]"``) and
token counts are deterministic, so tests can assert on what the gateway forwarded and billed. With
``tools`` or ``response_format`` it calls tools and answers structured output as every fake does
(foxgate/fakes/tools.py): a call as ``tool_calls`` with ``finish_reason: "tool_calls"``, streamed as
its opening delta (id and name) and then its arguments a few characters at a time; a call costs a
token per 4 characters of its arguments. With ``logprobs`` a text answer carries made-up logprobs of its
tokens (``token_logprobs``), ``top_logprobs`` alternatives each, in every streamed chunk too.

Standalone: ``python -m foxgate.fakes.openai --port 8900 [--latency 0.2]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from .server import FakeProviderServer, FakeRequestHandler, InvalidRequest, Route, run_cli
from .tools import Tool, example, pick, structured_reply, tool_result_reply

DEFAULT_MODEL = "fake-model"
SYSTEM_FINGERPRINT = "fp_fake0penai"
IMAGE_TOKENS = 85  # what OpenAI bills for a low-detail image
STREAM_ERROR_STATUS = 500  # the error an error_after stream ends with
ARGUMENT_PIECE = 8  # characters of a tool call's arguments per streamed delta
EMBEDDING_DIMENSIONS = 8  # a vector's length when the request names none
ROLES = ("system", "developer", "user", "assistant", "tool")
# video_url is not OpenAI's but vLLM's; gateways put it in the same OpenAI-dialect requests.
# OpenAI's own part types, plus the URL parts vLLM and OpenRouter take for video, audio and files.
PART_TYPES = ("text", "image_url", "input_audio", "file", "video_url", "audio_url", "file_url")
AUDIO_FORMATS = ("wav", "mp3")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
DATA_URI = re.compile(r"data:[^,;/]+/[^,;]+(;[^,]*)?,")

# OpenAI's error type, code and stock message per status, so gateways see realistic bodies.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "authentication_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    403: ("permission_error", None, "You are not allowed to perform this request."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    504: ("server_error", None, "Gateway timeout."),
}


class FakeOpenAI(FakeProviderServer):
    """``POST /v1/chat/completions`` (plain and streamed) and ``GET /v1/models``."""

    provider_name = "openai"
    api_base_path = "/v1"

    def error_body(self, status: int, message: str | None = None, param: str | None = None) -> Any:
        default_type = "invalid_request_error" if status < 500 else "server_error"
        kind, code, stock_message = ERRORS.get(status, (default_type, None, "Request failed."))
        if message is not None:
            # OpenAI leaves code null on bespoke messages such as validation errors and "Invalid URL".
            return {"error": {"message": message, "type": kind, "param": param, "code": None}}
        return {"error": {"message": stock_message, "type": kind, "param": param, "code": code}}

    def chat_completions(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        body = exchange.body
        validate_chat_request(body)
        knobs = exchange.knobs
        messages = body["messages"]
        limit = _first_given(body, "max_completion_tokens", "max_tokens")
        call = tool_call(body)
        text = knobs.reply if knobs.reply is not None else reply_text(body)
        reply, finish_reason = ("", "tool_calls") if call else truncate_words(text, limit)
        n = _first_given(body, "n") or 1
        prompt_tokens = count_prompt_tokens(messages)
        completion_tokens = n * (
            math.ceil(len(call["function"]["arguments"]) / 4) if call else len(reply.split())
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        top = (_first_given(body, "top_logprobs") or 0) if body.get("logprobs") else None
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(exchange, head, reply, finish_reason, n, usage if include_usage else None, call, top)
            return
        message = {"role": "assistant", "content": reply, "refusal": None, "annotations": []}
        if call:
            message |= {"content": None, "tool_calls": [call]}
        logprobs = None if top is None or call else token_logprobs(split_reply(reply, None), top)
        choices = [
            {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}
            for index in range(n)
        ]
        exchange.send_json(200, {**head, "object": "chat.completion", "choices": choices, "usage": usage})

    def _stream(
        self,
        exchange: FakeRequestHandler,
        head: dict[str, Any],
        reply: str,
        finish_reason: str,
        n: int,
        usage: dict[str, Any] | None,
        call: dict[str, Any] | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        knobs = exchange.knobs
        # With include_usage, OpenAI puts "usage": null on every chunk before the usage chunk.
        usage_field = {"usage": None} if usage is not None else {}

        def send_chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            logprobs = None
            if top_logprobs is not None and delta.get("content"):
                logprobs = token_logprobs([delta["content"]], top_logprobs)
            choices = [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
                for index in range(n)
            ]
            chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **usage_field}
            exchange.send_event(json.dumps(chunk))

        exchange.start_stream()
        if not self.sleep(knobs.time_to_first_token):
            exchange.drop_connection()
            return
        send_chunk({"role": "assistant", "content": "", "refusal": None})
        if call:
            # OpenAI opens a call with its id and name, then streams its arguments in pieces.
            opening = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            send_chunk({"tool_calls": [{"index": 0, **opening}]})
            for piece in argument_pieces(call["function"]["arguments"]):
                send_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        pieces = split_reply(reply, knobs.chunk_count)
        sent, ending = knobs.stream_ending(len(pieces))
        for index, piece in enumerate(pieces[:sent]):
            if index and not self.sleep(knobs.chunk_interval):
                exchange.drop_connection()
                return
            send_chunk({"content": piece})
        # A cut or an error, even one falling after the last piece, means the stream never
        # finishes: the client sees neither finish_reason nor [DONE].
        if ending == "cut":
            exchange.drop_connection()
            return
        if ending == "error":
            # OpenAI reports a failure mid-stream as a bare data line carrying its error body.
            exchange.send_event(json.dumps(self.error_body(STREAM_ERROR_STATUS)))
            exchange.end_stream()
            return
        send_chunk({}, finish_reason)
        if usage is not None:
            usage_chunk = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            exchange.send_event(json.dumps(usage_chunk))
        exchange.send_event("[DONE]")
        exchange.end_stream()

    def list_models(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        models = [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake-openai"}
            for model in dict.fromkeys([DEFAULT_MODEL, *self.requested_models()])
        ]
        exchange.send_json(200, {"object": "list", "data": models})

    def embeddings(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        """OpenAI's embeddings: a deterministic vector per input (``embedding_vector``), float or base64."""
        body = exchange.body
        if not isinstance(body, dict):
            raise InvalidRequest("We could not parse the JSON body of your request.")
        _required(body, "model", "", "a string")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            raise InvalidRequest("'$.input' is invalid. Please check the API reference.", "input")
        encoding = body.get("encoding_format") or "float"
        _one_of(encoding, ("float", "base64"), "encoding_format")
        dimensions = _first_given(body, "dimensions") or EMBEDDING_DIMENSIONS
        data = []
        for index, text in enumerate(inputs):
            vector = embedding_vector(text, dimensions)
            encoded = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if encoding == "base64"
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(math.ceil(len(text) / 4) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        exchange.send_json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

    routes = (
        Route("POST", r"/v1/chat/completions", chat_completions),
        Route("POST", r"/v1/embeddings", embeddings),
        Route("GET", r"/v1/models", list_models),
    )


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``: the same text always embeds the same."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[index % len(digest)] / 255 - 0.5 + index / 1e6 for index in range(dimensions)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]


def tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake model makes (foxgate/fakes/tools.py), as OpenAI's tool call, or None."""
    tools = [
        Tool(tool["function"]["name"], tool["function"].get("parameters") or {})
        for tool in body.get("tools") or []
    ]
    choice = body.get("tool_choice")
    messages = body["messages"]
    tool = pick(
        tools,
        forced=choice["function"]["name"] if isinstance(choice, dict) else choice == "required" or None,
        never=choice == "none",
        answered=messages[-1]["role"] == "tool",
        last_user_text=content_text(last_user_content(messages)),
    )
    if tool is None:
        return None
    arguments = json.dumps(example(tool.schema), separators=(",", ":"))
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": tool.name, "arguments": arguments},
    }


def argument_pieces(arguments: str) -> list[str]:
    """A call's arguments as a stream sends them: a few characters at a time."""
    return [arguments[start : start + ARGUMENT_PIECE] for start in range(0, len(arguments), ARGUMENT_PIECE)]


def reply_text(body: dict[str, Any]) -> str:
    """What the fake model says: what the tools returned, the structured document asked for, or the echo."""
    messages = body["messages"]
    trailing = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        trailing.insert(0, content_text(message.get("content")))
    if trailing:
        return tool_result_reply(trailing)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        schema = (response_format.get("json_schema") or {}).get("schema")
        return structured_reply(schema, content_text(last_user_content(messages)))
    return echo(messages)


def echo(messages: list[dict[str, Any]], image_type: str = "image_url") -> str:
    """The default reply: the last user message's text, and how many ``image_type`` parts it carried."""
    content = last_user_content(messages)
    reply = f"Echo: {content_text(content)}"
    images = sum(1 for part in _parts(content) if part["type"] == image_type)
    return f"{reply} [images: {images}]" if images else reply


def last_user_content(messages: list[dict[str, Any]]) -> Any:
    """The content of the last user message, None when there is none."""
    last_user = next((message for message in reversed(messages) if message["role"] == "user"), {})
    return last_user.get("content")


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A deterministic stand-in for tokenisation: 4 characters a token, plus a flat price per image."""
    chars = sum(len(content_text(message.get("content"))) for message in messages)
    images = sum(
        1 for message in messages for part in _parts(message.get("content")) if part["type"] == "image_url"
    )
    return math.ceil(chars / 4) + IMAGE_TOKENS * images


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in _parts(content) if part["type"] == "text")


def _parts(content: Any) -> list[dict[str, Any]]:
    return content if isinstance(content, list) else []


def truncate_words(text: str, limit: int | None) -> tuple[str, str]:
    """The reply cut to ``limit`` words (one word standing for one token), and its finish_reason."""
    words = re.findall(r"\s*\S+", text)
    if limit is None or len(words) <= limit:
        return text, "stop"
    return "".join(words[:limit]), "length"


def token_logprobs(tokens: list[str], top: int) -> dict[str, Any]:
    """OpenAI's logprobs of a reply's tokens (a word each, as the fake counts them): each token's own, a
    made-up one, and ``top`` most likely alternatives, itself first."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = []
    for token in tokens:
        logprob = -round(len(token) / 100, 4)
        alternatives = [
            entry(token if rank == 0 else f"{token}{rank}", logprob - rank) for rank in range(top)
        ]
        content.append({**entry(token, logprob), "top_logprobs": alternatives})
    return {"content": content, "refusal": None}


def split_reply(text: str, chunk_count: int | None) -> list[str]:
    """Stream pieces whose concatenation is ``text``: ``chunk_count`` even slices, else one per word."""
    if chunk_count is None:
        # Words keep their leading whitespace, the way real token deltas look.
        return re.findall(r"\s*\S+|\s+$", text)
    bounds = [len(text) * index // chunk_count for index in range(chunk_count + 1)]
    return [text[start:end] for start, end in pairwise(bounds)]


def _first_given(body: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present and not null; OpenAI treats null like an omitted parameter."""
    return next((body[name] for name in names if body.get(name) is not None), None)


def validate_chat_request(body: Any) -> None:
    """Reject what OpenAI rejects, with its messages and ``param`` paths; unknown fields pass."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
            "not valid JSON.)"
        )
    _required(body, "model", "", "a string")
    messages = _required(body, "messages", "", "an array")
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
        )
    for index, message in enumerate(messages):
        _validate_message(message, f"messages[{index}]")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _check_number(body, name, "an integer", minimum=1)
    _check_number(body, "temperature", "a decimal", minimum=0, maximum=2)
    _check_number(body, "top_p", "a decimal", minimum=0, maximum=1)
    _optional(body, "stream", "a boolean")
    _optional(body, "user", "a string")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(item, str) for item in stop))
    ):
        raise InvalidRequest(
            "Invalid type for 'stop': expected one of a string or array of strings, "
            f"but got {_kind(stop)} instead.",
            "stop",
        )
    if _optional(body, "stream_options", "an object") is not None:
        if body.get("stream") is not True:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
        _optional(body["stream_options"], "include_usage", "a boolean", "stream_options")
    top_logprobs = _optional(body, "top_logprobs", "an integer")
    if top_logprobs is not None and not body.get("logprobs"):
        raise InvalidRequest(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
            "top_logprobs",
        )
    effort = _optional(body, "reasoning_effort", "a string")
    if effort is not None:
        _one_of(effort, REASONING_EFFORTS, "reasoning_effort")


def _validate_message(message: Any, param: str) -> None:
    _require_type(message, param, "an object")
    role = _required(message, "role", param, "a string")
    _one_of(role, ROLES, f"{param}.role")
    if role == "tool" and message.get("tool_call_id") is None:
        raise InvalidRequest(
            "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
            f"{param}.tool_call_id",
        )
    content = message.get("content")
    if content is None:
        # Assistant turns that only call tools legitimately carry no content.
        if role == "assistant":
            return
        raise InvalidRequest(f"Missing required parameter: '{param}.content'.", f"{param}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid type for '{param}.content': expected one of a string or array of objects, "
            f"but got {_kind(content)} instead.",
            f"{param}.content",
        )
    for index, part in enumerate(content):
        _validate_part(part, role, f"{param}.content[{index}]")


def _validate_part(part: Any, role: str, param: str) -> None:
    _require_type(part, param, "an object")
    kind = _required(part, "type", param, "a string")
    _one_of(kind, PART_TYPES, f"{param}.type")
    if kind != "text" and role != "user":
        raise InvalidRequest(
            f"Content parts of type '{kind}' are only allowed for messages with role 'user', "
            f"but this message has role '{role}'.",
            f"{param}.type",
        )
    match kind:
        case "text":
            _required(part, "text", param, "a string")
        case "image_url" | "video_url" | "audio_url" | "file_url":
            media = _required(part, kind, param, "an object")
            url = _required(media, "url", f"{param}.{kind}", "a string")
            target = urlsplit(url)
            if not (target.scheme in ("http", "https") and target.netloc) and not DATA_URI.match(url):
                raise InvalidRequest(
                    f"Invalid '{param}.{kind}.url'. Expected a valid URL, "
                    "but got a value with an invalid format.",
                    f"{param}.{kind}.url",
                )
        case "input_audio":
            audio = _required(part, "input_audio", param, "an object")
            _required(audio, "data", f"{param}.input_audio", "a string")
            audio_format = _required(audio, "format", f"{param}.input_audio", "a string")
            _one_of(audio_format, AUDIO_FORMATS, f"{param}.input_audio.format")
        case "file":
            file = _required(part, "file", param, "an object")
            if not any(isinstance(file.get(key), str) for key in ("file_id", "file_data")):
                raise InvalidRequest(
                    f"Invalid '{param}.file': expected a 'file_id' or 'file_data' string.", f"{param}.file"
                )


def _required(obj: dict[str, Any], key: str, parent: str, expected: str) -> Any:
    path = f"{parent}.{key}" if parent else key
    if obj.get(key) is None:
        raise InvalidRequest(f"Missing required parameter: '{path}'.", path)
    _require_type(obj[key], path, expected)
    return obj[key]


def _optional(obj: dict[str, Any], key: str, expected: str, parent: str = "") -> Any:
    if obj.get(key) is not None:
        _require_type(obj[key], f"{parent}.{key}" if parent else key, expected)
    return obj.get(key)


def _check_number(
    body: dict[str, Any], name: str, expected: str, minimum: float, maximum: float | None = None
) -> None:
    value = _optional(body, name, expected)
    if value is None:
        return
    noun = "integer" if expected == "an integer" else "decimal"
    if value < minimum:
        raise InvalidRequest(
            f"Invalid '{name}': {noun} below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            name,
        )
    if maximum is not None and value > maximum:
        raise InvalidRequest(
            f"Invalid '{name}': {noun} above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            name,
        )


def _one_of(value: str, allowed: Sequence[str], param: str) -> None:
    if value not in allowed:
        listed = ", ".join(f"'{option}'" for option in allowed[:-1]) + f", and '{allowed[-1]}'"
        raise InvalidRequest(f"Invalid value: '{value}'. Supported values are: {listed}.", param)


def _require_type(value: Any, param: str, expected: str) -> None:
    if _kind(value) != expected and not (expected == "a decimal" and _kind(value) == "an integer"):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.", param
        )


def _kind(value: Any) -> str:
    """How OpenAI's error messages name a JSON value's type."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a decimal"
        case str():
            return "a string"
        case list():
            return "an array"
        case _:
            return "an object"


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(FakeOpenAI, argv)


if __name__ == "__main__":
    sys.exit(main())
