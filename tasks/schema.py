"""Shapes of the API's answers, for the OpenAPI schema (drf-spectacular).

The answers themselves are built by tasks/selectors.py and foxgate/errors.py;
tests/tasks/test_openapi.py checks that real answers and these shapes agree key for key."""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers


class ErrorDetailSchema(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    code = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSchema(serializers.Serializer):
    error = ErrorDetailSchema()


class ChatMessageSchema(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True)
    reasoning_content = serializers.CharField(required=False)


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
    status = serializers.ChoiceField(choices=["pending", "processing", "completed", "failed"])
    progress = serializers.IntegerField(min_value=0, max_value=100)
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
        child=serializers.ChoiceField(choices=["text", "vision", "video", "audio"])
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
# does, so a client generated from the schema cannot build a request the API refuses for its shape.
_MEDIA_FIELDS = ("image_urls", "video_urls", "audio_url", "messages")
_CUSTOM_ONLY_FIELDS = ("top_p", "stop")


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


class GenerationRequestSchemaExtension(OpenApiSerializerExtension):
    target_class = "tasks.serializers.GenerationRequestSerializer"

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["anyOf"] = GENERATION_PROTOCOLS
        return schema


def _sse_event(name: str, data: dict[str, Any], *, with_id: bool = False) -> dict[str, Any]:
    return {"event": name, "id": "the chunk's number, from 0" if with_id else None, "data": data}


# Server-sent events are text, not JSON; OpenAPI 3.0 has no way to describe the events inside, so
# the stream is a string whose events are listed, with the JSON shape of each `data:` line, under
# x-events (the names and shapes tasks/streaming.py writes).
EVENT_STREAM_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "event-stream",
    "description": "Server-sent events, each `[id: N]\\nevent: NAME\\ndata: JSON\\n\\n`, and `: keep-alive` "
    "comments while the upstream is silent. The stream ends after a `done` or an `error` event.",
    "x-events": [
        _sse_event(
            "chunk",
            {
                "type": "object",
                "description": "An OpenAI chat.completion.chunk",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string", "enum": ["chat.completion.chunk"]},
                    "created": {"type": "integer"},
                    "model": {"type": "string"},
                    "choices": {"type": "array", "items": {"type": "object"}},
                },
                "required": ["id", "object", "created", "model", "choices"],
            },
            with_id=True,
        ),
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
