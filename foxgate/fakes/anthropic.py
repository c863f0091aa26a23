"""Fake Anthropic provider speaking the real Messages API wire format.

The default answer echoes the last user message (``"Echo: <text>"`` plus ``" [images: N]"``), exactly
like the OpenAI fake, and token counts are deterministic, so tests can assert on what the gateway
forwarded and billed:

- Input: a prompt is a sequence of blocks (each tool definition, each system text block, each
  message content block; string content counts as one text block). A text block costs
  ``ceil(len(text) / 4)`` tokens, an image ``IMAGE_TOKENS``, a document ``DOCUMENT_TOKENS`` (a text
  document its text's tokens), a tool result its content's tokens, anything else (tool definitions,
  tool_use, thinking...) the tokens of its compact JSON as if it were text.
- Output: one token a word, thinking included; ``max_tokens`` cuts the words off (thinking first),
  then the reply stops at the earliest ``stop_sequences`` entry it contains. With ``thinking``
  enabled (or adaptive), a ``thinking`` block ("Thinking about: <last user text>") comes first, signed.
  As the real API does, the fake refuses a thinking block sent back with another signature than the one
  it gave, and, with thinking on, an assistant turn of tool_use blocks that a final tool result answers
  unless the turn starts with its thinking block; and a forced tool_choice beside thinking.
- Streams: ``message_start``, then per block ``content_block_start``/``_delta``/``_stop`` (a ``ping``
  after the first start), ``message_delta`` and ``message_stop``. The knobs ``chunk_count``,
  ``cut_after`` and ``error_after`` count text deltas only (thinking streams one delta a word);
  ``error_after`` ends the stream with an ``error`` event carrying an ``overloaded_error``.
- Tools and structured output (``output_config.format``) as every fake has them
  (foxgate/fakes/tools.py): a call is a ``tool_use`` block with ``stop_reason: "tool_use"``, streamed
  as its block's start and ``input_json_delta`` pieces; a ``tool_result`` block is the result it reads.
- Prompt caching, simulated per fake instance: a block carrying ``cache_control`` (or the last
  block, for a top-level ``cache_control``) is a breakpoint, and the prompt up to and including it
  is a prefix the fake remembers for the model. ``cache_read_input_tokens`` is the tokens of the
  longest prefix remembered from an earlier request; ``cache_creation_input_tokens`` the tokens from
  there to the last breakpoint (split in ``cache_creation`` by the ``ttl`` of the breakpoint ending
  each stretch); ``input_tokens`` the rest. So the first request with a cached system prompt
  reports it as cache creation, and the same prefix again reports it as cache read. There is no
  minimum cacheable length and no expiry; ``reset()`` (``POST /_fake/reset``) forgets the cache.

Standalone: ``python -m foxgate.fakes.anthropic --port 8901 [--latency 0.2]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from .openai import (
    DEFAULT_MODEL,
    argument_pieces,
    content_text,
    echo,
    last_user_content,
    split_reply,
    truncate_words,
)
from .server import (
    CONTROL_PREFIX,
    FakeProviderServer,
    FakeRequestHandler,
    InvalidRequest,
    Knobs,
    Route,
    run_cli,
)
from .tools import Tool, example, pick, structured_reply, tool_result_reply

IMAGE_TOKENS = 1600  # roughly what Anthropic bills for a 1092x1092 image
DOCUMENT_TOKENS = 1500
MIN_THINKING_BUDGET = 1024
MAX_CACHE_BREAKPOINTS = 4
STREAM_ERROR_STATUS = 529  # the error an error_after stream ends with: Anthropic's usual mid-stream one
ROLES = ("user", "assistant")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
IMAGE_SOURCES = ("base64", "url", "file")
DOCUMENT_SOURCES = ("base64", "text", "content", "url", "file")
THINKING_TYPES = ("enabled", "disabled", "adaptive")
# The content block types the Messages API takes; those not validated in depth below pass through.
BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
)
USER_ONLY_BLOCKS = ("image", "document", "search_result", "tool_result", "container_upload")
ASSISTANT_ONLY_BLOCKS = ("thinking", "redacted_thinking", "tool_use", "server_tool_use")
# Top-level request fields the API knows; like the real API, any other is rejected.
REQUEST_FIELDS = (
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "tools",
    "tool_choice",
    "cache_control",
    "container",
    "context_management",
    "diagnostics",
    "inference_geo",
    "mcp_servers",
    "output_config",
    "service_tier",
    "speed",
    "user_profile_id",
    "workspace_id",
)
DELTA_USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"

# Anthropic's error type and stock message per status; other 4xx are invalid_request_error, 5xx api_error.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    ),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    409: ("conflict_error", "Conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(FakeProviderServer):
    """``POST /v1/messages`` (plain and streamed), ``GET /v1/models`` and ``GET /v1/models/{id}``.

    Takes the key from ``x-api-key`` (or ``Authorization: Bearer``), requires an ``anthropic-version``
    header, and answers every request with a ``request-id`` header (also the ``request_id`` of error
    bodies).
    """

    provider_name = "anthropic"
    api_base_path = ""  # the SDK's base URL is the server root; it appends /v1/messages itself

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **knobs: Any) -> None:
        super().__init__(port=port, host=host, **knobs)
        self._prompt_cache: set[str] = set()
        # Each request is answered on its own thread; error_body has no exchange to read the id from.
        self._current = threading.local()

    def reset(self) -> Knobs:
        """Restore the default knobs and forget the prompt cache."""
        with self._lock:
            self._prompt_cache.clear()
        return super().reset()

    def handle(self, exchange: FakeRequestHandler) -> None:
        if not exchange.route_path.startswith(CONTROL_PREFIX):
            self._current.request_id = exchange.response_headers["request-id"] = _new_id("req_011C", 20)
        super().handle(exchange)

    def presented_api_key(self, exchange: FakeRequestHandler) -> str | None:
        """``x-api-key``, else a bearer token: newer SDK releases send API keys as bearer tokens."""
        return exchange.headers.get("x-api-key") or super().presented_api_key(exchange)

    def error_body(self, status: int, message: str | None = None, param: str | None = None) -> Any:
        default_type = "invalid_request_error" if status < 500 else "api_error"
        kind, stock_message = ERRORS.get(status, (default_type, "Request failed."))
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message or stock_message}}
        request_id = getattr(self._current, "request_id", None)
        if request_id is not None:
            body["request_id"] = request_id
        return body

    def messages(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        _require_version(exchange)
        body = exchange.body
        validate_messages_request(body)
        knobs = exchange.knobs
        messages = body["messages"]
        max_tokens = body["max_tokens"]
        blocks: list[dict[str, Any]] = []
        output_tokens = 0
        if _thinks(body):
            thought, _ = truncate_words(
                f"Thinking about: {content_text(last_user_content(messages))}", max_tokens
            )
            blocks.append({"type": "thinking", "thinking": thought, "signature": _signature(thought)})
            output_tokens = len(thought.split())
        use = tool_use(body)
        if use is not None:
            blocks.append(use)
            output_tokens += math.ceil(len(json.dumps(use["input"])) / 4)
            stop_reason, stop_sequence = "tool_use", None
        else:
            text = knobs.reply if knobs.reply is not None else reply_text(body)
            reply, stop_reason, stop_sequence = generate(
                text, max_tokens - output_tokens, body.get("stop_sequences")
            )
            blocks.append({"type": "text", "text": reply})
            output_tokens += len(reply.split())
        message = {
            "id": _new_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {**self._input_usage(body), "output_tokens": output_tokens, "service_tier": "standard"},
        }
        if body.get("stream"):
            self._stream(exchange, message)
            return
        exchange.send_json(200, message)

    def _input_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """Input token counts, consulting and filling the simulated prompt cache (see module docs)."""
        blocks = prompt_blocks(body)
        ends = [0]
        for _, tokens, _ in blocks:
            ends.append(ends[-1] + tokens)
        breakpoints = [index for index, (_, _, cache_control) in enumerate(blocks) if cache_control]
        keys = {
            index: hashlib.sha256(
                json.dumps([body["model"], [identity for identity, _, _ in blocks[: index + 1]]]).encode()
            ).hexdigest()
            for index in breakpoints
        }
        with self._lock:
            hit = max((index for index in breakpoints if keys[index] in self._prompt_cache), default=-1)
            self._prompt_cache.update(keys.values())
        cached = ends[hit + 1]
        created = {"5m": 0, "1h": 0}
        written = cached
        for index in breakpoints:
            if index > hit:
                # Each stretch up to a breakpoint is written with that breakpoint's ttl.
                created[blocks[index][2].get("ttl") or "5m"] += ends[index + 1] - written
                written = ends[index + 1]
        creation = sum(created.values())
        return {
            "input_tokens": ends[-1] - cached - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": cached,
            "cache_creation": {
                "ephemeral_5m_input_tokens": created["5m"],
                "ephemeral_1h_input_tokens": created["1h"],
            },
        }

    def _stream(self, exchange: FakeRequestHandler, message: dict[str, Any]) -> None:
        knobs = exchange.knobs

        def send(kind: str, **payload: Any) -> None:
            exchange.send_event(json.dumps({"type": kind, **payload}), kind)

        deltas = 0

        def send_delta(index: int, delta: dict[str, Any]) -> bool:
            nonlocal deltas
            if deltas and not self.sleep(knobs.chunk_interval):
                exchange.drop_connection()
                return False
            send("content_block_delta", index=index, delta=delta)
            deltas += 1
            return True

        exchange.start_stream()
        if not self.sleep(knobs.time_to_first_token):
            exchange.drop_connection()
            return
        # The real API opens with the message shell: no content yet, and a token or so of output.
        usage = message["usage"]
        opening = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        send("message_start", message={**opening, "usage": {**usage, "output_tokens": 1}})
        for index, block in enumerate(message["content"]):
            emptied = {"thinking": {"thinking": "", "signature": ""}, "tool_use": {"input": {}}}
            send(
                "content_block_start",
                index=index,
                content_block={**block, **emptied.get(block["type"], {"text": ""})},
            )
            if index == 0:
                send("ping")  # where the real API sends its first keep-alive
            if block["type"] == "tool_use":
                for piece in argument_pieces(json.dumps(block["input"])):
                    if not send_delta(index, {"type": "input_json_delta", "partial_json": piece}):
                        return
            elif block["type"] == "thinking":
                for piece in split_reply(block["thinking"], None):
                    if not send_delta(index, {"type": "thinking_delta", "thinking": piece}):
                        return
                if not send_delta(index, {"type": "signature_delta", "signature": block["signature"]}):
                    return
            else:
                pieces = split_reply(block["text"], knobs.chunk_count)
                sent, ending = knobs.stream_ending(len(pieces))
                for piece in pieces[:sent]:
                    if not send_delta(index, {"type": "text_delta", "text": piece}):
                        return
                # A cut or an error, even one falling after the last piece, means the stream never
                # finishes: the client sees neither the stop reason nor message_stop.
                if ending == "cut":
                    exchange.drop_connection()
                    return
                if ending == "error":
                    exchange.send_event(json.dumps(self.error_body(STREAM_ERROR_STATUS)), "error")
                    exchange.end_stream()
                    return
            send("content_block_stop", index=index)
        # message_delta usage counts are cumulative totals, as the real API sends them.
        send(
            "message_delta",
            delta={"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            usage={name: usage[name] for name in DELTA_USAGE_FIELDS},
        )
        send("message_stop")
        exchange.end_stream()

    def list_models(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        _require_version(exchange)
        models = [_model_info(model) for model in dict.fromkeys([DEFAULT_MODEL, *self.requested_models()])]
        page = {"data": models, "has_more": False, "first_id": models[0]["id"], "last_id": models[-1]["id"]}
        exchange.send_json(200, page)

    def get_model(self, exchange: FakeRequestHandler, match: re.Match[str]) -> None:
        _require_version(exchange)
        exchange.send_json(200, _model_info(match["model"]))

    routes = (
        Route("POST", r"/v1/messages", messages),
        Route("GET", r"/v1/models", list_models),
        Route("GET", r"/v1/models/(?P<model>[^/]+)", get_model),
    )


def tool_use(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake model makes (foxgate/fakes/tools.py), as a tool_use block, or None."""
    tools = [Tool(tool["name"], tool.get("input_schema") or {}) for tool in body.get("tools") or []]
    choice = body.get("tool_choice") or {}
    tool = pick(
        tools,
        forced=choice.get("name") if choice.get("type") == "tool" else choice.get("type") == "any" or None,
        never=choice.get("type") == "none",
        answered=bool(_tool_results(body["messages"][-1])),
        last_user_text=content_text(last_user_content(body["messages"])),
    )
    if tool is None:
        return None
    return {
        "type": "tool_use",
        "id": _new_id("toolu_01", 22),
        "name": tool.name,
        "input": example(tool.schema),
    }


def _tool_results(message: dict[str, Any]) -> list[str]:
    """The text of each tool_result block of a user message."""
    if message["role"] != "user":
        return []
    results = [block for block in _blocks(message["content"]) if block.get("type") == "tool_result"]
    return [content_text(result.get("content") or "") for result in results]


def reply_text(body: dict[str, Any]) -> str:
    """What the fake model says: what the tools returned, the structured document asked for, or the echo."""
    results = _tool_results(body["messages"][-1])
    if results:
        return tool_result_reply(results)
    output_format = (body.get("output_config") or {}).get("format") or {}
    if output_format.get("type") == "json_schema":
        return structured_reply(
            output_format.get("schema"), content_text(last_user_content(body["messages"]))
        )
    return echo(body["messages"], image_type="image")


def generate(text: str, limit: int, stop_sequences: Sequence[str] | None) -> tuple[str, str, str | None]:
    """The reply: ``text`` cut to ``limit`` words, then at the earliest stop sequence it contains.

    Returns the reply, its stop_reason and the stop sequence that ended it.
    """
    reply, finish_reason = truncate_words(text, max(limit, 0))
    hits = [(reply.find(sequence), sequence) for sequence in stop_sequences or () if sequence in reply]
    if hits:
        # min() keeps the first listed among sequences found at the same place.
        position, sequence = min(hits, key=lambda hit: hit[0])
        return reply[:position], "stop_sequence", sequence
    return reply, "max_tokens" if finish_reason == "length" else "end_turn", None


def prompt_blocks(body: dict[str, Any]) -> list[tuple[Any, int, dict[str, Any] | None]]:
    """The prompt in cache order (tools, system, messages): each block's identity, tokens, cache_control."""
    entries: list[tuple[str, Any]] = [("tool", tool) for tool in body.get("tools") or []]
    entries += [("system", block) for block in _blocks(body.get("system"))]
    for message in body["messages"]:
        entries += [(message["role"], block) for block in _blocks(message["content"])]
    blocks = [
        ((owner, _without_cache_control(block)), block_tokens(block), block.get("cache_control"))
        for owner, block in entries
    ]
    if body.get("cache_control") and blocks and not blocks[-1][2]:
        # Top-level cache_control caches up to the last block, as a breakpoint placed there would.
        blocks[-1] = (*blocks[-1][:2], body["cache_control"])
    return blocks


def block_tokens(block: dict[str, Any]) -> int:
    match block.get("type"):
        case "text":
            return _text_tokens(block["text"])
        case "image":
            return IMAGE_TOKENS
        case "document":
            source = block["source"]
            return _text_tokens(source["data"]) if source.get("type") == "text" else DOCUMENT_TOKENS
        case "tool_result":
            return sum(block_tokens(part) for part in _blocks(block.get("content")))
        case _:
            return _text_tokens(json.dumps(_without_cache_control(block), separators=(",", ":")))


def _text_tokens(text: str) -> int:
    """A deterministic stand-in for tokenisation: 4 characters a token."""
    return math.ceil(len(text) / 4)


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Content as blocks: a string is one text block, None none."""
    if content is None:
        return []
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _without_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _thinks(body: dict[str, Any]) -> bool:
    return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def _signature(thought: str) -> str:
    """A stand-in for the opaque signature of a thinking block: deterministic, base64 like the real one."""
    return base64.b64encode(hashlib.sha256(thought.encode()).digest() * 2).decode()


def _new_id(prefix: str, length: int) -> str:
    return prefix + uuid.uuid4().hex[:length]


def _model_info(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2025-01-01T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def _require_version(exchange: FakeRequestHandler) -> None:
    if not exchange.headers.get("anthropic-version"):
        raise InvalidRequest("anthropic-version: header is required")


def validate_messages_request(body: Any) -> None:
    """Reject what the Messages API rejects, with its ``path: problem`` messages."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    extra = [name for name in body if name not in REQUEST_FIELDS]
    if extra:
        raise InvalidRequest(f"{extra[0]}: Extra inputs are not permitted", extra[0])
    _required(body, "model", str)
    max_tokens = _required(body, "max_tokens", int)
    if max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1", "max_tokens")
    messages = _required(body, "messages", list)
    if not messages:
        raise InvalidRequest("messages: at least one message is required", "messages")
    for index, message in enumerate(messages):
        _validate_message(message, f"messages.{index}", last=index == len(messages) - 1)
    if messages[0]["role"] != "user":
        raise InvalidRequest('messages: first message must use the "user" role', "messages")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _check(system, list, "system", "a valid string or a valid list")
        for index, block in enumerate(system):
            path = f"system.{index}"
            _check(block, dict, path)
            if block.get("type") != "text":
                raise InvalidRequest(f"{path}.type: Input should be 'text'", path)
            _validate_block(block, "system", path)
    for name in ("temperature", "top_p"):
        value = _optional(body, name, float)
        if value is not None and not 0 <= value <= 1:
            raise InvalidRequest(f"{name}: range: 0..1", name)
    top_k = _optional(body, "top_k", int)
    if top_k is not None and top_k < 0:
        raise InvalidRequest("top_k: Input should be greater than or equal to 0", "top_k")
    stop_sequences = _optional(body, "stop_sequences", list)
    for index, sequence in enumerate(stop_sequences or []):
        _check(sequence, str, f"stop_sequences.{index}")
        if not sequence.strip():
            raise InvalidRequest(
                "stop_sequences: each stop sequence must contain non-whitespace", "stop_sequences"
            )
    _optional(body, "stream", bool)
    metadata = _optional(body, "metadata", dict)
    if metadata is not None:
        _optional(metadata, "user_id", str, "metadata")
    for index, tool in enumerate(_optional(body, "tools", list) or []):
        _check(tool, dict, f"tools.{index}")
        _required(tool, "name", str, f"tools.{index}")
        if "cache_control" in tool:
            _validate_cache_control(tool["cache_control"], f"tools.{index}.cache_control")
    if "cache_control" in body:
        _validate_cache_control(body["cache_control"], "cache_control")
    _validate_thinking(body)
    breakpoints = sum(1 for _, _, cache_control in prompt_blocks(body) if cache_control)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )


def _validate_thinking(body: dict[str, Any]) -> None:
    thinking = _optional(body, "thinking", dict)
    if thinking is None:
        return
    kind = thinking.get("type")
    if kind not in THINKING_TYPES:
        raise InvalidRequest(f"thinking: {_tag_error(kind, THINKING_TYPES)}", "thinking")
    if kind == "enabled":
        budget = _required(thinking, "budget_tokens", int, "thinking.enabled")
        if budget < MIN_THINKING_BUDGET:
            raise InvalidRequest(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to "
                f"{MIN_THINKING_BUDGET}",
                "thinking.budget_tokens",
            )
        if budget >= body["max_tokens"]:
            raise InvalidRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`. "
                f"Please consult our documentation at {DOCS}#max-tokens-and-context-window-size",
                "max_tokens",
            )
    _validate_thinking_turn(body)
    if _thinks(body) and (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.", "tool_choice")
    if _thinks(body) and body.get("temperature") not in (None, 1):
        raise InvalidRequest(
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation "
            f"at {DOCS}#important-considerations-when-using-extended-thinking",
            "temperature",
        )


def _validate_thinking_turn(body: dict[str, Any]) -> None:
    """With thinking on, a turn answering tool results continues the assistant's: its message with the
    tool_use blocks must start with the thinking that led to them, sent back as it came."""
    messages = body["messages"]
    answering = [
        i for i, m in enumerate(messages) if m["role"] == "user" and "tool_result" in _block_types(m)
    ]
    if not _thinks(body) or not answering or answering[-1] != len(messages) - 1 or answering[-1] == 0:
        return
    index = answering[-1] - 1
    first = _block_types(messages[index])[:1]
    if "tool_use" in _block_types(messages[index]) and first not in (["thinking"], ["redacted_thinking"]):
        raise InvalidRequest(
            f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{(first or ['nothing'])[0]}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
            "blocks). We recommend you include thinking blocks from previous turns. To avoid this "
            f"requirement, disable `thinking`. Please consult our documentation at {DOCS}",
            f"messages.{index}.content.0.type",
        )


def _block_types(message: dict[str, Any]) -> list[str]:
    return [block.get("type") for block in _blocks(message["content"])]


def _validate_message(message: Any, path: str, last: bool) -> None:
    _check(message, dict, path)
    extra = [name for name in message if name not in ("role", "content")]
    if extra:
        raise InvalidRequest(f"{path}.{extra[0]}: Extra inputs are not permitted", f"{path}.{extra[0]}")
    role = _required(message, "role", str, path)
    if role not in ROLES:
        raise InvalidRequest(f"{path}.role: Input should be 'user' or 'assistant'", f"{path}.role")
    if "content" not in message:
        raise InvalidRequest(f"{path}.content: Field required", f"{path}.content")
    content = message["content"]
    if not isinstance(content, str):
        _check(content, list, f"{path}.content", "a valid string or a valid list")
    if not content and not (last and role == "assistant"):
        raise InvalidRequest(
            f"{path}: all messages must have non-empty content "
            "except for the optional final assistant message",
            path,
        )
    for index, block in enumerate(content if isinstance(content, list) else []):
        _validate_block(block, role, f"{path}.content.{index}")


def _validate_block(block: Any, role: str, path: str) -> None:
    _check(block, dict, path)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"{path}: Unable to extract tag using discriminator 'type'", path)
    if kind not in BLOCK_TYPES:
        raise InvalidRequest(f"{path}: {_tag_error(kind, BLOCK_TYPES)}", path)
    if (kind in USER_ONLY_BLOCKS and role != "user") or (
        kind in ASSISTANT_ONLY_BLOCKS and role != "assistant"
    ):
        raise InvalidRequest(f"{path}.type: '{kind}' blocks are not allowed in '{role}' content", path)
    tagged = f"{path}.{kind}"
    match kind:
        case "text":
            if not _required(block, "text", str, tagged):
                root = path.split(".", 1)[0]  # "messages" or "system"
                raise InvalidRequest(f"{root}: text content blocks must be non-empty", path)
        case "image":
            source = _required(block, "source", dict, tagged)
            match _required(source, "type", str, f"{tagged}.source"):
                case "base64":
                    media_type = _required(source, "media_type", str, f"{tagged}.source.base64")
                    if media_type not in IMAGE_MEDIA_TYPES:
                        allowed = ", ".join(f"'{option}'" for option in IMAGE_MEDIA_TYPES[:-1])
                        raise InvalidRequest(
                            f"{tagged}.source.base64.media_type: Input should be {allowed} "
                            f"or '{IMAGE_MEDIA_TYPES[-1]}'",
                            f"{tagged}.source.media_type",
                        )
                    _required(source, "data", str, f"{tagged}.source.base64")
                case "url":
                    url = _required(source, "url", str, f"{tagged}.source.url")
                    if not re.match(r"https?://[^/\s]+", url):
                        raise InvalidRequest(f"{tagged}.source.url.url: Input should be a valid URL", path)
                case "file":
                    _required(source, "file_id", str, f"{tagged}.source.file")
                case other:
                    raise InvalidRequest(
                        f"{tagged}.source: {_tag_error(other, IMAGE_SOURCES)}", f"{tagged}.source"
                    )
        case "document":
            source = _required(block, "source", dict, tagged)
            source_type = _required(source, "type", str, f"{tagged}.source")
            if source_type not in DOCUMENT_SOURCES:
                raise InvalidRequest(
                    f"{tagged}.source: {_tag_error(source_type, DOCUMENT_SOURCES)}", f"{tagged}.source"
                )
            if source_type == "text":
                _required(source, "data", str, f"{tagged}.source.text")
        case "tool_use":
            _required(block, "id", str, tagged)
            _required(block, "name", str, tagged)
            _required(block, "input", dict, tagged)
        case "tool_result":
            _required(block, "tool_use_id", str, tagged)
            content = block.get("content")
            if content is not None and not isinstance(content, str):
                _check(content, list, f"{tagged}.content", "a valid string or a valid list")
                for index, part in enumerate(content):
                    _validate_block(part, "user", f"{tagged}.content.{index}")
        case "thinking":
            thought = _required(block, "thinking", str, tagged)
            if _required(block, "signature", str, tagged) != _signature(thought):
                raise InvalidRequest(f"{path}: Invalid `signature` in `thinking` block", path)
        case "redacted_thinking":
            _required(block, "data", str, tagged)
    if "cache_control" in block:
        _validate_cache_control(block["cache_control"], f"{tagged}.cache_control")


def _validate_cache_control(value: Any, path: str) -> None:
    _check(value, dict, path)
    if value.get("type") != "ephemeral":
        raise InvalidRequest(f"{path}.type: Input should be 'ephemeral'", path)
    if value.get("ttl") not in (None, "5m", "1h"):
        raise InvalidRequest(f"{path}.ttl: Input should be '5m' or '1h'", path)


def _tag_error(tag: Any, expected: Sequence[str]) -> str:
    tags = ", ".join(f"'{option}'" for option in expected)
    return f"Input tag '{tag}' found using 'type' does not match any of the expected tags: {tags}"


_TYPE_NAMES = {
    str: "a valid string",
    int: "a valid integer",
    float: "a valid number",
    bool: "a valid boolean",
    list: "a valid list",
    dict: "a valid dictionary",
}


def _required(obj: dict[str, Any], key: str, expected: type, parent: str = "") -> Any:
    path = f"{parent}.{key}" if parent else key
    if key not in obj:
        raise InvalidRequest(f"{path}: Field required", path)
    _check(obj[key], expected, path)
    return obj[key]


def _optional(obj: dict[str, Any], key: str, expected: type, parent: str = "") -> Any:
    """The value of ``key`` if given and not null; null counts as omitted."""
    if obj.get(key) is not None:
        _check(obj[key], expected, f"{parent}.{key}" if parent else key)
    return obj.get(key)


def _check(value: Any, expected: type, path: str, description: str | None = None) -> None:
    # JSON has one number type: bools are never numbers, and whole numbers are fine where decimals are.
    valid = not isinstance(value, bool) or expected is bool
    if expected is float:
        valid = valid and isinstance(value, int | float)
    else:
        valid = valid and isinstance(value, expected)
    if not valid:
        raise InvalidRequest(f"{path}: Input should be {description or _TYPE_NAMES[expected]}", path)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(FakeAnthropic, argv)


if __name__ == "__main__":
    sys.exit(main())
