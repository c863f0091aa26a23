"""Shapes of the API's answers, for the OpenAPI schema (drf-spectacular).

The answers themselves are built by tasks/selectors.py and foxgate/errors.py;
tests/tasks/test_openapi.py checks that real answers and these shapes agree key for key."""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import serializers

from tasks.serializers import ANSWER_FIELDS, ATTRIBUTION, CACHE_CONTROL_SCHEMA, CHAT_PARAMETERS, TOOL_NAME


class ErrorDetailSchema(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    code = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSchema(serializers.Serializer):
    error = ErrorDetailSchema()


class AnthropicErrorDetailSchema(serializers.Serializer):
    type = serializers.CharField(help_text="invalid_request_error, authentication_error, ... api_error")
    message = serializers.CharField()


class AnthropicErrorSchema(serializers.Serializer):
    """Anthropic's error body (POST /v1/messages)."""

    type = serializers.CharField(help_text="always error")
    error = AnthropicErrorDetailSchema()


class ToolCallFunctionSchema(serializers.Serializer):
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="a JSON object, as a string")


class ToolCallSchema(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField(help_text="always function")
    function = ToolCallFunctionSchema()


class ChatMessageSchema(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True, help_text="null when the message only calls tools")
    reasoning_content = serializers.CharField(required=False)
    tool_calls = ToolCallSchema(many=True, required=False)


class ChatChoiceSchema(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatMessageSchema()
    finish_reason = serializers.CharField(allow_null=True)


class UsageSchema(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatCompletionSchema(serializers.Serializer):
    """An OpenAI `chat.completion`, whichever provider served it."""

    id = serializers.CharField()
    object = serializers.CharField(default="chat.completion")
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatChoiceSchema(many=True)
    usage = UsageSchema()


class EmbeddingSchema(serializers.Serializer):
    object = serializers.CharField(help_text="always embedding")
    index = serializers.IntegerField()
    embedding = serializers.JSONField(help_text="a list of floats, or base64 of little-endian float32s")


class EmbeddingsUsageSchema(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class EmbeddingsSchema(serializers.Serializer):
    """OpenAI's embeddings list (POST /v1/embeddings)."""

    object = serializers.CharField(help_text="always list")
    data = EmbeddingSchema(many=True)
    model = serializers.CharField()
    usage = EmbeddingsUsageSchema()


class TaskStreamSchema(serializers.Serializer):
    url = serializers.CharField()


class TaskErrorSchema(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    type = serializers.CharField(default="task_error")


class TaskUsageSchema(serializers.Serializer):
    credits_reserved = serializers.DecimalField(max_digits=20, decimal_places=6)
    credits_charged = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    user_group = serializers.CharField()


class TaskSchema(serializers.Serializer):
    id = serializers.CharField(help_text="task-llmrouter-{unix seconds}-{8 chars of [a-z0-9]}")
    object = serializers.CharField(default="llm.generation.task")
    type = serializers.CharField(default="llm")
    model = serializers.CharField(help_text="The model exactly as submitted.")
    status = serializers.ChoiceField(choices=["pending", "processing", "completed", "failed", "cancelled"])
    progress = serializers.IntegerField(min_value=0, max_value=100)
    can_cancel = serializers.BooleanField(help_text="Unfinished: POST /v1/tasks/{id}/cancel would stop it.")
    created = serializers.IntegerField()
    stream = TaskStreamSchema(allow_null=True)
    results = ChatCompletionSchema(many=True, allow_null=True)
    error = TaskErrorSchema(allow_null=True)
    usage = TaskUsageSchema()


class ModelEntrySchema(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(
            choices=["text", "vision", "video", "audio", "tools", "json_schema", "reasoning", "embeddings"]
        )
    )


class ModelListSchema(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelEntrySchema(many=True)


class SpendSchema(serializers.Serializer):
    held = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="Set aside for running tasks")
    period = serializers.ChoiceField(choices=["day", "month"], help_text="The budget period")
    period_start = serializers.DateTimeField()
    spend = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="Charged this period")
    budget = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)


class TenantCreditsSchema(SpendSchema):
    balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    available = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="balance - held")
    user_group = serializers.CharField()


class KeyCreditsSchema(SpendSchema):
    id = serializers.CharField()
    name = serializers.CharField()


class CreditsSchema(serializers.Serializer):
    object = serializers.CharField(default="account.credits")
    tenant = TenantCreditsSchema()
    key = KeyCreditsSchema()


# Which fields a submit needs depends on its protocol, picked by the one media field present
# (tasks/serializers.py GenerationRequestSerializer.validate). A flat object schema cannot say so; this
# does, with the rules of each field the serializer checks beyond its type (media URLs, content parts, no
# unknown fields, no NUL character), so a request built from the schema is one the API takes.
_MEDIA_FIELDS = ("image_urls", "video_urls", "audio_url", "messages")
_CUSTOM_ONLY_FIELDS = tuple(name for name in CHAT_PARAMETERS if name not in ATTRIBUTION)
NO_NUL = "^[^\\u0000]*$"  # PostgreSQL cannot store NUL: the API refuses it in any string
_TEXT = {"type": "string", "pattern": NO_NUL}
THINKING_BLOCK = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "pattern": "^thinking$"},
        "thinking": _TEXT,
        "signature": _TEXT,
    },
    "required": ["type", "thinking", "signature"],
    "additionalProperties": False,
}
REDACTED_THINKING_BLOCK = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "pattern": "^redacted_thinking$"},
        "data": {**_TEXT, "minLength": 1},
    },
    "required": ["type", "data"],
    "additionalProperties": False,
}
_HOST = r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?"
_PATH = r"[A-Za-z0-9._~%!$&'()*+,;=:@/-]*"
_VIDEO_PATH = r"/[A-Za-z0-9._~%/-]*\.(mp4|mpeg|mpg|mov|webm)"
_VIDEO_PAGE = r"[Hh][Tt][Tt][Pp][Ss]?://(youtube\.com|www\.youtube\.com|youtu\.be)(/" + _PATH + ")?"


def media_url(kind: str, *, inline: bool = True) -> dict[str, Any]:
    """An http(s) link (to a video file, for videos), or, in async mode, a base64 data URI of the kind."""
    link = f"{_HOST}{_VIDEO_PATH}|{_VIDEO_PAGE}" if kind == "video" else f"{_HOST}(/{_PATH})?"
    data = f"|data:{kind}/[a-z0-9.+-]+;base64,([A-Za-z0-9+/]{{4}})+" if inline else ""
    return {"type": "string", "pattern": f"^({link}{data})$"}


def _part(kind: str, media: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": [kind]},
            kind: media,
            "cache_control": CACHE_CONTROL_SCHEMA,
        },
        "required": ["type", kind],
        "additionalProperties": False,
    }


def _url_object(url: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"url": url, **more},
        "required": ["url"],
        "additionalProperties": False,
    }


def content_schema(*, inline: bool = True) -> dict[str, Any]:
    """A message's content: text, or a non-empty list of typed parts (tasks/serializers.py ContentField)."""
    parts = [
        _part("text", {"type": "string", "pattern": NO_NUL}),
        _part(
            "image_url",
            _url_object(
                media_url("image", inline=inline), detail={"type": "string", "enum": ["auto", "low", "high"]}
            ),
        ),
        _part("video_url", _url_object(media_url("video", inline=inline))),
        _part("audio_url", _url_object(media_url("audio", inline=inline))),
        _part("file_url", _url_object(media_url("application", inline=inline))),
    ]
    return {
        "oneOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "minItems": 1, "items": {"oneOf": parts}},
        ]
    }


def _none_of(*fields: str) -> dict[str, Any]:
    return {"not": {"anyOf": [{"required": [field]} for field in fields]}}


def _protocol(
    title: str, description: str, required: list[str], absent: tuple[str, ...], **extra: Any
) -> dict:
    return {"title": title, "description": description, "required": required, **_none_of(*absent), **extra}


GENERATION_PROTOCOLS = [
    _protocol("text", "a prompt alone", ["prompt"], (*_MEDIA_FIELDS, *_CUSTOM_ONLY_FIELDS)),
    _protocol(
        "vision",
        "a prompt about images",
        ["prompt", "image_urls"],
        ("video_urls", "audio_url", "messages", *_CUSTOM_ONLY_FIELDS),
    ),
    _protocol(
        "video",
        "a prompt about videos",
        ["prompt", "video_urls"],
        ("image_urls", "audio_url", "messages", *_CUSTOM_ONLY_FIELDS),
    ),
    _protocol(
        "audio",
        "an audio clip, with an optional prompt",
        ["audio_url"],
        ("image_urls", "video_urls", "messages", *_CUSTOM_ONLY_FIELDS),
    ),
    _protocol(
        "custom",
        "OpenAI chat messages, sent as given: no prompt, and any system prompt in a system message",
        ["messages"],
        ("prompt", "image_urls", "video_urls", "audio_url"),
        properties={"system_prompt": {"type": "string", "maxLength": 0, "nullable": True}},
    ),
]


def _media_properties(*, inline: bool) -> dict[str, Any]:
    return {
        "image_urls": {"items": media_url("image", inline=inline)},
        "video_urls": {"items": media_url("video", inline=inline)},
        "audio_url": media_url("audio", inline=inline),
        "messages": {"items": {"properties": {"content": content_schema(inline=inline)}}},
    }


# Sync mode takes media by link only: inline data is for async tasks.
SYNC_TAKES_LINKS_ONLY = {
    "anyOf": [
        # `not true` rather than an enum, which drf-spectacular would lift into a component of its own
        {"properties": {"sync": {"not": {"enum": [True]}}}},
        {"properties": _media_properties(inline=False)},
    ]
}


def _no_nul_in_strings(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        if field.get("type") == "string" and "pattern" not in field and "enum" not in field:
            field["pattern"] = NO_NUL


class RequestSchemaExtension(OpenApiSerializerExtension):
    """A request serializer's schema as drf-spectacular maps it, plus what its own checks refuse and the
    fields cannot say (`request_rules`); responses as mapped. A subclass names its `target_class`."""

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            self.request_rules(schema)
        return schema

    def request_rules(self, schema: dict[str, Any]) -> None:
        raise NotImplementedError


def _closed_body(schema: dict[str, Any]) -> None:
    """What every submit's body shares: no NUL in its strings, `stop` as StopField takes it, and no field
    beyond those listed."""
    _no_nul_in_strings(schema)
    text = {"type": "string", "pattern": NO_NUL}
    schema["properties"]["stop"]["oneOf"] = [
        text,
        {"type": "array", "items": text, "minItems": 1, "maxItems": 4},
    ]
    schema["additionalProperties"] = False


class GenerationRequestSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.GenerationRequestSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        _closed_body(schema)
        media, fields = _media_properties(inline=True), schema["properties"]
        fields["image_urls"]["items"] = media["image_urls"]["items"]
        fields["video_urls"]["items"] = media["video_urls"]["items"]
        fields["audio_url"].update(media["audio_url"])
        _chat_parameters(schema)
        schema["anyOf"] = GENERATION_PROTOCOLS
        schema["allOf"] = [SYNC_TAKES_LINKS_ONLY, *PAIRED_PARAMETERS]


class MessageSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.MessageSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        _no_nul_in_strings(schema)  # refusal, name and tool_call_id
        fields = schema["properties"]
        fields["content"] = content_schema()
        # the answer's own fields as OpenAI sends them back (taken and dropped: the server takes any JSON
        # without NUL, which a schema cannot say of an object's keys)
        fields["function_call"] = _closed({"name": _TEXT, "arguments": _TEXT}, nullable=True)
        fields["audio"] = _closed({"id": _TEXT}, nullable=True)
        citation = _closed(
            {
                "url": _TEXT,
                "title": _TEXT,
                "start_index": {"type": "integer"},
                "end_index": {"type": "integer"},
            }
        )
        annotation = _closed({"type": _TEXT, "url_citation": citation})
        fields["annotations"] = {"type": "array", "items": annotation, "nullable": True}
        schema["additionalProperties"] = False
        schema["required"] = ["role"]
        text = {"type": "string", "pattern": NO_NUL}
        text_only = {"oneOf": [text, {"type": "array", "minItems": 1, "items": _part("text", text)}]}
        schema["anyOf"] = [  # what each role carries; media only in user messages, as OpenAI has it
            {
                "properties": {"role": {"type": "string", "pattern": "^user$"}},
                "required": ["content"],
                **_none_of("tool_calls", "tool_call_id", "thinking_blocks", *ANSWER_FIELDS),
            },
            {
                "properties": {
                    "role": {"type": "string", "pattern": "^(system|developer)$"},
                    "content": text_only,
                },
                "required": ["content"],
                **_none_of("tool_calls", "tool_call_id", "thinking_blocks", *ANSWER_FIELDS),
            },
            {  # content, or none beside the tool calls it makes
                "properties": {
                    "role": {"type": "string", "pattern": "^assistant$"},
                    "content": {**text_only, "nullable": True},
                },
                "anyOf": [
                    {"required": ["content"], "properties": {"content": text_only}},
                    {"required": ["tool_calls"]},
                ],
                **_none_of("tool_call_id"),
            },
            {
                "properties": {"role": {"type": "string", "pattern": "^tool$"}, "content": text_only},
                "required": ["content", "tool_call_id"],
                **_none_of("tool_calls", "thinking_blocks", *ANSWER_FIELDS),
            },
        ]


def _closed(properties: dict[str, Any], *, nullable: bool = False) -> dict[str, Any]:
    """An object of these properties, all optional, and no other."""
    closed = {"type": "object", "properties": properties, "additionalProperties": False}
    return closed | {"nullable": True} if nullable else closed


class ThinkingBlockSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.ThinkingBlockSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        schema.clear()
        schema["oneOf"] = [THINKING_BLOCK, REDACTED_THINKING_BLOCK]


class FunctionNameSchema(OpenApiSerializerFieldExtension):
    target_class = "tasks.serializers.FunctionNameField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "pattern": TOOL_NAME.pattern}


class ResponseFormatSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.ResponseFormatSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        schema["additionalProperties"] = False
        schema["anyOf"] = _only_with_type("json_schema", ("text", "json_object"), field="json_schema")


def _only_with_type(kind: str, others: tuple[str, ...], *, field: str) -> list[dict[str, Any]]:
    """An object whose `field` comes with type `kind` and only with it (serializers.only_with_type)."""
    return [
        {"properties": {"type": {"type": "string", "pattern": f"^{kind}$"}}, "required": [field]},
        {"properties": {"type": {"type": "string", "pattern": f"^({'|'.join(others)})$"}}, **_none_of(field)},
    ]


def _absent_or_null(name: str, kind: str) -> list[dict[str, Any]]:
    return [{"not": {"required": [name]}}, {"properties": {name: {"not": {"type": kind}}}}]


def _chat_parameters(schema: dict[str, Any]) -> None:
    """The rules of the OpenAI chat parameters (tasks/serializers.py ChatParametersSerializer) that their
    fields cannot say. (Nor can OpenAPI 3.0 bound metadata's keys: 1 to 64 characters.)"""
    schema["properties"]["metadata"]["additionalProperties"]["pattern"] = NO_NUL


class ClosedObjectSchemaExtension(RequestSchemaExtension):
    """Every object within a request (each StrictRequestSerializer without an extension of its own): its
    fields and no other, no NUL in its strings."""

    target_class = "tasks.serializers.StrictRequestSerializer"
    match_subclasses = True
    priority = -1  # below the extensions of particular serializers

    def request_rules(self, schema: dict[str, Any]) -> None:
        _no_nul_in_strings(schema)
        schema["additionalProperties"] = False


# tool_choice and parallel_tool_calls only beside tools; top_logprobs only with logprobs true
PAIRED_PARAMETERS = [
    {"anyOf": [{"required": ["tools"]}, {"not": {"required": ["tool_choice"]}}]},
    {"anyOf": [{"required": ["tools"]}, *_absent_or_null("parallel_tool_calls", "boolean")]},
    {
        "anyOf": [
            {
                "required": ["logprobs"],
                "properties": {"logprobs": {"type": "boolean", "not": {"enum": [False]}}},
            },
            *_absent_or_null("top_logprobs", "integer"),
        ]
    },
]


class ChatCompletionRequestSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.ChatCompletionRequestSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        _closed_body(schema)
        _chat_parameters(schema)
        schema["allOf"] = [
            *PAIRED_PARAMETERS,
            # stream_options only with stream: true
            {
                "anyOf": [
                    {
                        "required": ["stream"],
                        "properties": {"stream": {"type": "boolean", "not": {"enum": [False]}}},
                    },
                    *_absent_or_null("stream_options", "object"),
                ]
            },
            # one of max_tokens (OpenAI's older name) and max_completion_tokens
            {
                "anyOf": [
                    *_absent_or_null("max_tokens", "integer"),
                    *_absent_or_null("max_completion_tokens", "integer"),
                ]
            },
        ]


def _sse_event(name: str, data: dict[str, Any], *, with_id: bool = False) -> dict[str, Any]:
    """One event, as an event stream's schema describes it before OpenAPI 3.2 (and as schemathesis checks
    it): its fields. OpenAPI 3.0 has no contentSchema for the JSON of the `data:` line: x-json says it."""
    fields: dict[str, Any] = {
        # a pattern, not an enum: drf-spectacular would lift an enum into a component of its own
        "event": {"type": "string", "pattern": f"^{name}$"},
        "data": {"type": "string", "description": "JSON", "x-json": data},
    }
    if with_id:
        fields["id"] = {"type": "string", "pattern": "^[0-9]+$", "description": "the chunk's number, from 0"}
    return {"type": "object", "title": name, "properties": fields, "required": list(fields)}


CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An OpenAI chat.completion.chunk",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "pattern": "^chat\\.completion\\.chunk$"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["id", "object", "created", "model", "choices"],
}

# OpenAI's stream of a chat completion (tasks/streaming.py, chat_completion_events): unnamed events.
CHAT_EVENT_STREAM_SCHEMA: dict[str, Any] = {
    "description": "Each event a `data:` line: a chat.completion.chunk, then `[DONE]`; a failed completion "
    'sends `{"error": {...}}` (OpenAI\'s error object) before `[DONE]`. Keep-alive comments while the '
    "upstream is silent.",
    "type": "object",
    "properties": {
        "data": {"type": "string", "description": "JSON (a chunk, or an error object), or [DONE]"}
    },
    "required": ["data"],
}

# Server-sent events (tasks/streaming.py): `chunk`s, then one `done` or `error`; `: keep-alive`
# comments, which carry no event, while the upstream is silent.
EVENT_STREAM_SCHEMA: dict[str, Any] = {
    "description": "Each event of the stream: `chunk` events with an `id:`, then `done` or `error`, which "
    "ends it. Keep-alive comments (`: keep-alive`) come while the upstream is silent.",
    "oneOf": [
        _sse_event("chunk", CHUNK_SCHEMA, with_id=True),
        _sse_event(
            "done",
            {
                "type": "object",
                "properties": {"total_chunks": {"type": "integer", "minimum": 0}},
                "required": ["total_chunks"],
            },
        ),
        _sse_event(
            "error",
            {
                "type": "object",
                "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
                "required": ["message", "code"],
            },
        ),
    ],
}


class AnthropicMessagesRequestSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.AnthropicMessagesRequestSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        _no_nul_in_strings(schema)
        schema["additionalProperties"] = False
        text = {"type": "string", "pattern": NO_NUL}
        text_block = _block("text", {"text": text})
        image_source = {
            "type": "object",
            "properties": {
                "type": {"type": "string", "pattern": "^url$"},
                "url": media_url("image", inline=False),
            },
            "required": ["type", "url"],
            "additionalProperties": False,
        }
        image_block = _block("image", {"source": image_source})
        tool_use_block = _block(
            "tool_use",
            {
                "id": text,
                "name": {"type": "string", "pattern": TOOL_NAME.pattern},
                "input": {"type": "object"},
            },
        )
        tool_result_block = _block(
            "tool_result",
            {
                "tool_use_id": text,
                "content": {"oneOf": [text, {"type": "array", "items": text_block}]},
                "is_error": {"type": "boolean"},
            },
            required=("tool_use_id",),
        )
        schema["properties"]["system"] = {
            "oneOf": [text, {"type": "array", "minItems": 1, "items": text_block}]
        }
        schema["allOf"] = [{"anyOf": [{"required": ["tools"]}, {"not": {"required": ["tool_choice"]}}]}]
        schema["properties"]["stop_sequences"]["items"] = {**text, "minLength": 1}
        messages = schema["properties"]["messages"]
        messages["items"] = {
            "type": "object",
            "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {}},
            "required": ["role", "content"],
            "additionalProperties": False,
            "anyOf": [  # images only in user messages
                {
                    "properties": {
                        "role": {"type": "string", "pattern": "^user$"},
                        "content": {
                            "oneOf": [
                                text,
                                {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"oneOf": [text_block, image_block, tool_result_block]},
                                },
                            ]
                        },
                    }
                },
                {
                    "properties": {
                        "role": {"type": "string", "pattern": "^assistant$"},
                        "content": {
                            "oneOf": [
                                text,
                                {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "oneOf": [
                                            text_block,
                                            tool_use_block,
                                            THINKING_BLOCK,
                                            REDACTED_THINKING_BLOCK,
                                        ]
                                    },
                                },
                            ]
                        },
                    }
                },
            ],
        }


def _block(kind: str, fields: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An Anthropic content block of `kind` with `fields` (all required unless said) and cache_control."""
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "pattern": f"^{kind}$"},
            **fields,
            "cache_control": CACHE_CONTROL_SCHEMA,
        },
        "required": ["type", *(fields if required is None else required)],
        "additionalProperties": False,
    }


class AnthropicThinkingSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.AnthropicThinkingSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        schema["additionalProperties"] = False
        schema["anyOf"] = _only_with_type("enabled", ("adaptive", "disabled"), field="budget_tokens")


class AnthropicToolChoiceSchemaExtension(RequestSchemaExtension):
    target_class = "tasks.serializers.AnthropicToolChoiceSerializer"

    def request_rules(self, schema: dict[str, Any]) -> None:
        schema["additionalProperties"] = False
        schema["anyOf"] = _only_with_type("tool", ("auto", "any", "none"), field="name")


ANTHROPIC_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Anthropic's Message",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "pattern": "^message$"},
        "role": {"type": "string", "pattern": "^assistant$"},
        "model": {"type": "string"},
        "content": {"type": "array", "items": {"type": "object"}},
        "stop_reason": {"type": "string", "nullable": True},
        "stop_sequence": {"type": "string", "nullable": True},
        "usage": {"type": "object"},
    },
    "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
}
ANTHROPIC_EVENT_STREAM_SCHEMA: dict[str, Any] = {
    "description": "Anthropic's stream events: message_start, content_block_start, content_block_delta, "
    "content_block_stop, message_delta, message_stop; ping while the upstream is silent; error ends a "
    "failed one.",
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string", "description": "JSON"}},
    "required": ["event", "data"],
}
