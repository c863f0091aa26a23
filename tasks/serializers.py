"""The public API's input rules (API.md's field tables) and the shapes of its outputs."""

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from foxgate import webhooks

PROMPT_MAX = 100_000
SYSTEM_PROMPT_MAX = 10_000
MEDIA_ITEMS_MAX = 10
MESSAGES_MAX = 1_000
STOP_SEQUENCES_MAX = 4
VIDEO_EXTENSIONS = (".mp4", ".mpeg", ".mpg", ".mov", ".webm")
VIDEO_PAGE_HOSTS = ("youtube.com", "www.youtube.com", "youtu.be")  # pages Gemini takes in place of a file
DEFAULT_AUDIO_PROMPT = "Transcribe this audio."
ROLES = ("system", "developer", "user", "assistant", "tool")
TOOLS_MAX = 128  # OpenAI's limit on tool definitions
DESCRIPTION_MAX = 10_000  # of a tool or a response format
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a function's name, as every provider takes it
TOOL_CALL_ID_MAX = 8192  # Gemini's carry its thought signature (tasks/relay/providers/gemini.py)
TOOL_CHOICES = ("none", "auto", "required")
FUNCTION_TYPES = ("function",)  # the one kind of OpenAI tool and tool call
ANSWER_FIELDS = (
    "refusal",
    "annotations",
    "audio",
    "function_call",
    "reasoning_content",
)
# Claude's thinking blocks: as an answer carries them (`thinking_blocks`), as a /v1/messages turn sends them
THINKING_BLOCK_FIELDS = {"thinking": {"type", "thinking", "signature"}, "redacted_thinking": {"type", "data"}}
THINKING_BLOCKS_MAX = 64
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
METADATA_MAX = 8  # tags a request may carry
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
MAX_TOKENS_LIMIT = 1_000_000  # above any model's output; keeps credit arithmetic in range
IMAGE_DETAILS = ("auto", "low", "high")
PART_TYPES = ("text", "image_url", "video_url", "audio_url", "file_url")
PROTOCOL_FIELDS = ("messages", "audio_url", "video_urls", "image_urls")  # the field that picks each protocol
PROTOCOLS = {"messages": "custom", "audio_url": "audio", "video_urls": "video", "image_urls": "vision"}
# The OpenAI chat parameters the custom protocol and the chat dialect take besides messages
CHAT_PARAMETERS = (
    "top_p", "stop", "frequency_penalty", "presence_penalty", "seed", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "logprobs", "top_logprobs", "user", "metadata",
)  # fmt: skip
TOP_LOGPROBS_MAX = 20  # OpenAI's
ATTRIBUTION = ("user", "metadata")  # the caller's own: kept on the task, never sent upstream
_DATA_URI = re.compile(
    r"^data:(?P<kind>[a-z]+)/(?P<subtype>[a-z0-9.+-]+);base64,(?P<payload>.*)$", re.I | re.S
)


_TEXT_VALIDATORS = (ProhibitNullCharactersValidator(), ProhibitSurrogateCharactersValidator())


def checked_text(value: str) -> str:
    """Refuse text PostgreSQL cannot store (NUL, lone surrogates), as CharField does for its own values."""
    for validator in _TEXT_VALIDATORS:
        try:
            validator(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None
    return value


def checked_json(value: Any) -> Any:
    """Refuse a JSON value holding text PostgreSQL cannot store, anywhere within it."""
    text = json.dumps(value, ensure_ascii=False)
    if "\\u0000" in text:
        raise serializers.ValidationError("must not contain NUL characters")
    checked_text(text)
    return value


def is_inline(url: str) -> bool:
    return url[:5].lower() == "data:"


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else: DRF's own field would take "yes", 1 or "false"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "must be an integer"}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "must be a number"}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CallbackUrlField(StrictCharField):
    """Where the final task is POSTed (tasks/callbacks.py): an HTTPS URL whose host is not a private,
    loopback or link-local address as written; its name is resolved and checked again at delivery."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=webhooks.URL_MAX_LENGTH, required=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        try:
            webhooks.url_check(url, resolve=False)
        except DjangoValidationError as refused:
            raise serializers.ValidationError(refused.messages[0]) from None
        return url


class StrictListField(serializers.ListField):
    default_error_messages = {"not_a_list": "must be an array"}


class MediaUrlField(StrictCharField):
    """An http(s) URL, or a `data:<kind>/<type>;base64,` URI whose payload really decodes.

    `kind` is image, video or audio; `error_code` is the API error code for a malformed item.
    """

    def __init__(self, *, kind: str, error_code: str = "invalid_param", **kwargs: Any) -> None:
        self.kind = kind
        self.error_code = error_code
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        if not is_inline(url):
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                self.reject(f"must be an http(s):// URL or a data:{self.kind}/<type>;base64,<payload> URI")
            self.check_link(parts.hostname, parts.path)
            return url
        match = _DATA_URI.match(url)
        if not match:
            self.reject(f"is not a well-formed data:{self.kind}/<type>;base64,<payload> URI")
        if match["kind"].lower() != self.kind:
            self.reject(f"is a data URI of type {match['kind']}/{match['subtype']}, not {self.kind}/*")
        try:
            base64.b64decode(match["payload"], validate=True)
        except (binascii.Error, ValueError):
            self.reject("is a data URI whose base64 payload does not decode")
        if not match["payload"]:
            self.reject("is a data URI with an empty payload")
        return url

    def check_link(self, host: str, path: str) -> None:
        """Further rules for links, beyond being http(s)."""

    def reject(self, message: str) -> None:
        raise serializers.ValidationError(message, code=self.error_code)


class VideoUrlField(MediaUrlField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kind="video", **kwargs)

    def check_link(self, host: str, path: str) -> None:
        if host.lower() in VIDEO_PAGE_HOSTS:
            return
        if not path.lower().endswith(VIDEO_EXTENSIONS):
            self.reject(f"must be a direct link to a video file ending in {', '.join(VIDEO_EXTENSIONS)}")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": list(PART_TYPES)}},
                    "required": ["type"],
                },
            },
        ]
    }
)
class ContentField(serializers.Field):
    """A message's content: a string, or a list of typed parts with their URLs checked."""

    def to_internal_value(self, data: Any) -> str | list[dict[str, Any]]:
        if isinstance(data, str):
            return checked_text(data)
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError("must be a string or a non-empty array of content parts")
        errors: dict[int, Any] = {}
        parts = []
        for index, part in enumerate(data):
            try:
                parts.append(self.part(part))
            except serializers.ValidationError as error:
                errors[index] = error.detail
        if errors:
            raise serializers.ValidationError(errors)
        return parts

    def part(self, part: Any) -> dict[str, Any]:
        if not isinstance(part, dict):
            raise serializers.ValidationError("must be an object")
        kind = part.get("type")
        if kind not in PART_TYPES:
            raise serializers.ValidationError({"type": [f"must be one of {', '.join(PART_TYPES)}"]})
        unknown = sorted(set(part) - {"type", kind, "cache_control"})
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        return with_breakpoint(self.checked_part(kind, part), part)

    def checked_part(self, kind: str, part: dict[str, Any]) -> dict[str, Any]:
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise serializers.ValidationError({"text": ["must be a string"]})
            try:
                return {"type": "text", "text": checked_text(text)}
            except serializers.ValidationError as error:
                raise serializers.ValidationError({"text": error.detail}) from None
        media = part.get(kind)
        if not isinstance(media, dict) or "url" not in media:
            raise serializers.ValidationError({kind: ['must be an object {"url": "..."}']})
        allowed = {"url", "detail"} if kind == "image_url" else {"url"}
        unknown = sorted(set(media) - allowed)
        if unknown:
            raise serializers.ValidationError({kind: {unknown[0]: ["is not a known field"]}})
        if "detail" in media and media["detail"] not in IMAGE_DETAILS:
            raise serializers.ValidationError(
                {kind: {"detail": [f"must be one of {', '.join(IMAGE_DETAILS)}"]}}
            )
        try:
            url = part_url_field(kind).run_validation(media["url"])
        except serializers.ValidationError as error:
            raise serializers.ValidationError({kind: {"url": error.detail}}) from None
        return {"type": kind, kind: {**media, "url": url}}


def part_url_field(kind: str) -> serializers.Field:
    if kind == "image_url":
        return MediaUrlField(kind="image", error_code="invalid_image_url")
    if kind == "video_url":
        return VideoUrlField()
    if kind == "audio_url":
        return MediaUrlField(kind="audio")
    return MediaUrlField(kind="application")


CACHE_CONTROL_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "pattern": "^ephemeral$"},
        "ttl": {"type": "string", "pattern": "^(5m|1h)$"},
    },
    "required": ["type"],
    "additionalProperties": False,
}


@extend_schema_field(CACHE_CONTROL_SCHEMA)
class CacheControlField(serializers.Field):
    """A prompt cache breakpoint, as Anthropic reads it: {"type": "ephemeral"}, with a ttl of 5m (the
    default) or 1h. It reaches Anthropic's channels; the others cache prompts by themselves."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if (
            not isinstance(data, dict)
            or data.get("type") != "ephemeral"
            or not set(data) <= {"type", "ttl"}
            or data.get("ttl", "5m") not in ("5m", "1h")
        ):
            raise serializers.ValidationError(
                'must be {"type": "ephemeral"}, with an optional ttl of 5m or 1h'
            )
        return dict(data)


def with_breakpoint(part: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`part` with the cache breakpoint (cache_control) of the part or block it was made from, checked."""
    if "cache_control" in given:
        try:
            part["cache_control"] = CacheControlField().run_validation(given["cache_control"])
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"cache_control": error.detail}) from None
    return part


class FunctionNameField(StrictCharField):
    default_error_messages = {"name": "must be 1 to 64 letters, digits, underscores or dashes"}

    def to_internal_value(self, data: Any) -> str:
        name = super().to_internal_value(data)
        if not TOOL_NAME.match(name):
            self.fail("name")
        return name


@extend_schema_field({"type": "object"})
class JsonSchemaField(serializers.Field):
    """A JSON Schema (tool parameters, a response format's schema), checked against its metaschema."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON Schema object")
        try:
            jsonschema.validators.validator_for(data).check_schema(data)
        except jsonschema.SchemaError as error:
            raise serializers.ValidationError(f"is not a valid JSON Schema: {error.message}") from None
        return checked_json(data)


@extend_schema_field({"type": "string", "description": "a JSON object, as a string"})
class JsonArgumentsField(StrictCharField):
    """A tool call's arguments: a JSON object in a string, as OpenAI sends them."""

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            parsed = json.loads(text) if text.strip() else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise serializers.ValidationError("must be a JSON object, as a string")
        return text


def media_from_users_only(message: dict[str, Any]) -> dict[str, Any]:
    """Refuse media in a message other than the user's, as OpenAI does (and every provider with it)."""
    if message["role"] != "user" and isinstance(message["content"], list):
        for index, part in enumerate(message["content"]):
            if part["type"] != "text":
                problem = f"{part['type']} parts are only allowed in user messages"
                raise serializers.ValidationError({"content": {index: {"type": [problem]}}})
    return message


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "maxItems": STOP_SEQUENCES_MAX},
        ]
    }
)
class StopField(serializers.Field):
    def to_internal_value(self, data: Any) -> str | list[str]:
        if isinstance(data, str):
            return checked_text(data)
        if (
            isinstance(data, list)
            and 0 < len(data) <= STOP_SEQUENCES_MAX
            and all(isinstance(s, str) for s in data)
        ):
            return [checked_text(sequence) for sequence in data]
        raise serializers.ValidationError(
            f"must be a string or an array of 1 to {STOP_SEQUENCES_MAX} strings"
        )


class StrictRequestSerializer(serializers.Serializer):
    """A request body, or an object within one: a JSON object whose every field is declared (an unknown
    one is 422 naming it). `not_taken` lists the names its API defines that this gateway does not take
    yet, refused by name as such rather than as unknown."""

    not_taken: frozenset[str] = frozenset()
    not_taken_as = "a parameter"

    @property
    def fields(self) -> Any:
        """The declared fields, built and bound once per process rather than deep-copied for every request
        (DRF's default, 40% of a validation when profiled). Sharing them is safe here: validation keeps its
        state on the serializer and in exceptions, never on a field, and every instance is alike (no
        instance, no context, never partial), so the one the fields are bound to answers as any would."""
        shared = type(self).__dict__.get("_fields_once")
        if shared is None:
            shared = serializers.Serializer.fields.func(self)  # type: ignore[attr-defined]
            type(self)._fields_once = shared  # type: ignore[attr-defined]
        return shared

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            if self.parent is None:
                raise serializers.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
            raise serializers.ValidationError("must be an object")
        untaken = sorted(set(data) & self.not_taken)
        if untaken:
            raise _invalid(untaken[0], f"is {self.not_taken_as} this gateway does not take yet")
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        return super().to_internal_value(data)


def one_of(choices: tuple[str, ...], **kwargs: Any) -> serializers.ChoiceField:
    """A field taking one of `choices`, its error listing them."""
    return serializers.ChoiceField(
        choices=choices, error_messages={"invalid_choice": "must be one of " + ", ".join(choices)}, **kwargs
    )


def _function_type() -> serializers.ChoiceField:
    return one_of(FUNCTION_TYPES)


class ToolCallFunctionSerializer(StrictRequestSerializer):
    name = FunctionNameField()
    arguments = JsonArgumentsField(trim_whitespace=False)


class ToolCallSerializer(StrictRequestSerializer):
    """A call an assistant message made (OpenAI's `tool_calls` item)."""

    id = StrictCharField(max_length=TOOL_CALL_ID_MAX)
    type = _function_type()
    function = ToolCallFunctionSerializer()


class ThinkingBlockSerializer(StrictRequestSerializer):
    """A thinking block of an earlier answer, sent back with it: Claude reads it again when its turn
    continues (a tool result), and its signature must come back unaltered."""

    type = one_of(tuple(THINKING_BLOCK_FIELDS))
    thinking = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    signature = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    data = StrictCharField(required=False, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        fields = THINKING_BLOCK_FIELDS[attrs["type"]]
        missing, foreign = sorted(fields - set(attrs)), sorted(set(attrs) - fields)
        if missing:
            raise _invalid(missing[0], f"is required in a {attrs['type']} block")
        if foreign:
            raise _invalid(foreign[0], f"is not a field of a {attrs['type']} block")
        return attrs


class MessageSerializer(StrictRequestSerializer):
    """An OpenAI chat message: content (none for an assistant message that only calls tools), an
    assistant's `tool_calls`, a tool message's `tool_call_id`."""

    role = one_of(ROLES)
    content = ContentField(required=False, allow_null=True)
    tool_calls = StrictListField(
        child=ToolCallSerializer(), min_length=1, max_length=TOOLS_MAX, required=False
    )
    tool_call_id = StrictCharField(max_length=TOOL_CALL_ID_MAX, required=False)
    # An answer's own fields, which clients send back with it (the openai SDK passes the message object):
    # taken in assistant messages and not sent upstream, as they tell the model nothing.
    refusal = StrictCharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    annotations = serializers.JSONField(required=False, allow_null=True)
    audio = serializers.JSONField(required=False, allow_null=True)
    function_call = serializers.JSONField(required=False, allow_null=True)
    reasoning_content = StrictCharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    # ...except Claude's thinking, which it reads again (tasks/relay/providers/anthropic.py)
    thinking_blocks = StrictListField(
        child=ThinkingBlockSerializer(), max_length=THINKING_BLOCKS_MAX, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        role = attrs["role"]
        for name in ANSWER_FIELDS:
            if name in attrs and role != "assistant":
                raise _invalid(name, "is only allowed in assistant messages")
            attrs.pop(name, None)
        if "thinking_blocks" in attrs and role != "assistant":
            raise _invalid("thinking_blocks", "is only allowed in assistant messages")
        if not attrs.get("thinking_blocks"):
            attrs.pop("thinking_blocks", None)
        if "tool_calls" in attrs and role != "assistant":
            raise _invalid("tool_calls", "is only allowed in assistant messages")
        if role == "tool" and "tool_call_id" not in attrs:
            raise _invalid("tool_call_id", "is required in tool messages: the id of the call it answers")
        if "tool_call_id" in attrs and role != "tool":
            raise _invalid("tool_call_id", "is only allowed in tool messages")
        if attrs.get("content") is None:
            if role != "assistant" or "tool_calls" not in attrs:
                raise _invalid("content", "is required, except in an assistant message with tool_calls")
            attrs["content"] = None
        if (
            role == "tool"
            and isinstance(attrs["content"], list)
            and any(part["type"] != "text" for part in attrs["content"])
        ):
            raise _invalid("content", "of a tool message must be text")
        return media_from_users_only(attrs)


def tool_exchanges_check(messages: list[dict[str, Any]]) -> None:
    """Every assistant tool call answered by the tool messages right after it, and no tool message
    answering anything else: what OpenAI, Anthropic and Gemini all require of a conversation."""
    open_calls: dict[str, int] = {}  # id -> index of the assistant message that made the call
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message["tool_call_id"] not in open_calls:
                raise _invalid(
                    f"messages[{index}].tool_call_id",
                    "does not answer a tool call of the assistant message before it",
                )
            del open_calls[message["tool_call_id"]]
            continue
        if open_calls:
            missing = next(iter(open_calls))
            raise _invalid(
                f"messages[{open_calls[missing]}].tool_calls",
                f"call {missing!r} has no tool message answering it before the next message",
            )
        ids = [call["id"] for call in message.get("tool_calls") or []]
        if len(set(ids)) != len(ids):
            raise _invalid(f"messages[{index}].tool_calls", "has two calls with the same id")
        open_calls = dict.fromkeys(ids, index)


def _description() -> StrictCharField:
    return StrictCharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, trim_whitespace=False
    )


class NamedSchemaSerializer(StrictRequestSerializer):
    """What a function and a response format share: a name, a description, and strict mode."""

    name = FunctionNameField()
    description = _description()
    strict = StrictBooleanField(required=False, allow_null=True)


class FunctionSerializer(NamedSchemaSerializer):
    parameters = JsonSchemaField(required=False)


class ToolSerializer(StrictRequestSerializer):
    """A tool the model may call (OpenAI's `tools` item): a function and its parameters' JSON Schema."""

    type = _function_type()
    function = FunctionSerializer()


class NamedFunctionSerializer(StrictRequestSerializer):
    name = FunctionNameField()


class NamedToolChoiceSerializer(StrictRequestSerializer):
    type = _function_type()
    function = NamedFunctionSerializer()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(TOOL_CHOICES)},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "pattern": "^function$"},
                    "function": {
                        "type": "object",
                        "properties": {"name": {"type": "string", "pattern": TOOL_NAME.pattern}},
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                },
                "required": ["type", "function"],
                "additionalProperties": False,
            },
        ]
    }
)
class ToolChoiceField(serializers.Field):
    """none, auto, required, or {"type": "function", "function": {"name": ...}}."""

    def to_internal_value(self, data: Any) -> str | dict[str, Any]:
        if isinstance(data, str):
            if data not in TOOL_CHOICES:
                raise serializers.ValidationError(
                    'must be none, auto, required or {"type": "function", "function": {"name": ...}}'
                )
            return data
        return NamedToolChoiceSerializer().run_validation(data)


class JsonSchemaFormatSerializer(NamedSchemaSerializer):
    schema = JsonSchemaField(required=False)


class ResponseFormatSerializer(StrictRequestSerializer):
    """text, json_object (any JSON object) or json_schema (a document valid for the schema)."""

    type = one_of(RESPONSE_FORMATS)
    json_schema = JsonSchemaFormatSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return only_with_type(attrs, "json_schema", field="json_schema")


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": METADATA_MAX,
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX},
    }
)
class MetadataField(serializers.Field):
    """Up to 8 string tags, as OpenAI's `metadata` takes them."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object of string tags")
        if len(data) > METADATA_MAX:
            raise serializers.ValidationError(f"takes at most {METADATA_MAX} tags")
        for key, value in data.items():
            if not 0 < len(key) <= METADATA_KEY_MAX:
                raise serializers.ValidationError(f"keys are 1 to {METADATA_KEY_MAX} characters")
            if not isinstance(value, str) or len(value) > METADATA_VALUE_MAX:
                raise serializers.ValidationError(
                    {key: [f"must be a string of at most {METADATA_VALUE_MAX} characters"]}
                )
            checked_text(key)
            checked_text(value)
        return data


class ChatParametersSerializer(StrictRequestSerializer):
    """The OpenAI chat parameters (CHAT_PARAMETERS) that the custom protocol and the chat dialect share,
    with the same rules."""

    top_p = StrictFloatField(min_value=0, max_value=1, required=False, allow_null=True)
    stop = StopField(required=False, allow_null=True)
    frequency_penalty = StrictFloatField(min_value=-2, max_value=2, required=False, allow_null=True)
    presence_penalty = StrictFloatField(min_value=-2, max_value=2, required=False, allow_null=True)
    seed = StrictIntegerField(min_value=-(2**63), max_value=2**63 - 1, required=False, allow_null=True)
    tools = StrictListField(child=ToolSerializer(), min_length=1, max_length=TOOLS_MAX, required=False)
    tool_choice = ToolChoiceField(required=False)
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    response_format = ResponseFormatSerializer(required=False)
    logprobs = StrictBooleanField(required=False, allow_null=True)
    top_logprobs = StrictIntegerField(
        min_value=0, max_value=TOP_LOGPROBS_MAX, required=False, allow_null=True
    )
    user = StrictCharField(max_length=256, required=False)
    metadata = MetadataField(required=False)
    n = StrictIntegerField(min_value=1, max_value=1, required=False, allow_null=True)  # one choice, always
    callback_url = CallbackUrlField()

    def chat_parameters(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The parameters given (not null, nor a false logprobs), checked against each other and against
        the messages."""
        if attrs.get("top_logprobs") is not None and not attrs.get("logprobs"):
            raise _invalid("top_logprobs", "is only allowed when logprobs is true")
        if attrs.get("logprobs") is False:
            del attrs["logprobs"]  # OpenAI's default: a model that has no logprobs takes it too
        tools = attrs.get("tools")
        for name in ("tool_choice", "parallel_tool_calls"):
            if attrs.get(name) is not None and not tools:
                raise _invalid(name, "is only allowed when tools are given")
        names = [tool["function"]["name"] for tool in tools or []]
        if len(set(names)) != len(names):
            raise _invalid("tools", "has two functions with the same name")
        choice = attrs.get("tool_choice")
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            raise _invalid("tool_choice.function.name", "is not the name of a function in tools")
        if "messages" in attrs:
            tool_exchanges_check(attrs["messages"])
        return {name: attrs[name] for name in CHAT_PARAMETERS if attrs.get(name) is not None}


class GenerationRequestSerializer(ChatParametersSerializer):
    """POST /v1/llm/generations. The protocol is picked by which media field is present."""

    model = StrictCharField(max_length=200)
    prompt = StrictCharField(max_length=PROMPT_MAX, required=False, trim_whitespace=False)
    system_prompt = StrictCharField(
        max_length=SYSTEM_PROMPT_MAX, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    image_urls = StrictListField(
        child=MediaUrlField(kind="image", error_code="invalid_image_url"),
        min_length=1,
        max_length=MEDIA_ITEMS_MAX,
        required=False,
    )
    video_urls = StrictListField(
        child=VideoUrlField(), min_length=1, max_length=MEDIA_ITEMS_MAX, required=False
    )
    audio_url = MediaUrlField(kind="audio", required=False)
    messages = StrictListField(
        child=MessageSerializer(), min_length=1, max_length=MESSAGES_MAX, required=False
    )
    max_tokens = StrictIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True)
    temperature = StrictFloatField(min_value=0, max_value=2, required=False, allow_null=True)
    reasoning = StrictBooleanField(required=False, allow_null=True)
    sync = StrictBooleanField(default=False)
    stream = StrictBooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        chosen = [name for name in PROTOCOL_FIELDS if name in attrs]
        if len(chosen) > 1:
            raise _invalid(chosen[1], f"cannot be combined with {chosen[0]}: a request uses one protocol")
        protocol = PROTOCOLS[chosen[0]] if chosen else "text"
        if protocol == "custom":
            # messages are sent exactly as given, so every error path into them is the caller's own
            if "prompt" in attrs:
                raise _invalid("prompt", "cannot be combined with messages: put the prompt in a user message")
            if attrs.get("system_prompt"):
                raise _invalid(
                    "system_prompt", "cannot be combined with messages: put it in a system message"
                )
        if protocol in ("text", "vision", "video") and "prompt" not in attrs:
            raise _invalid("prompt", "This field is required.")
        if protocol != "custom":
            for name in CHAT_PARAMETERS:
                if name in attrs and name not in ATTRIBUTION:
                    raise _invalid(name, "is only accepted with messages (the custom protocol)")
        if attrs["sync"]:
            for param, url in media_urls(attrs):
                if is_inline(url):
                    raise _invalid(param, "inline base64 media is accepted in async mode only; send a URL")
        attrs["protocol"] = protocol
        attrs["parameters"] = self.chat_parameters(attrs)
        return attrs


class StreamOptionsSerializer(StrictRequestSerializer):
    include_usage = StrictBooleanField(default=False)


# OpenAI's other Chat Completions parameters: refused by name, not as unknown (a 422 either way).
OPENAI_CHAT_PARAMETERS_NOT_TAKEN = frozenset(
    {
        "audio", "function_call", "functions", "logit_bias", "modalities", "prediction",
        "prompt_cache_key", "reasoning_effort", "safety_identifier", "service_tier", "store",
        "verbosity", "web_search_options",
    }
)  # fmt: skip


class ChatCompletionRequestSerializer(ChatParametersSerializer):
    """POST /v1/chat/completions: OpenAI's Chat Completions request, validated into what a generation's
    custom protocol takes (its messages, sent as given), always answered in sync mode."""

    not_taken = OPENAI_CHAT_PARAMETERS_NOT_TAKEN
    not_taken_as = "an OpenAI chat parameter"

    model = StrictCharField(max_length=200)
    messages = StrictListField(child=MessageSerializer(), min_length=1, max_length=MESSAGES_MAX)
    max_tokens = StrictIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True)
    max_completion_tokens = StrictIntegerField(
        min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True
    )
    temperature = StrictFloatField(min_value=0, max_value=2, required=False, allow_null=True)
    stream = StrictBooleanField(default=False, allow_null=True)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("stream_options") is not None and not attrs.get("stream"):
            raise _invalid("stream_options", "is only allowed when stream is true")
        # max_tokens is OpenAI's older name for max_completion_tokens
        if None not in (attrs.get("max_tokens"), attrs.get("max_completion_tokens")):
            raise _invalid("max_completion_tokens", "cannot be combined with max_tokens: send one of them")
        return {
            "model": attrs["model"],
            "messages": attrs["messages"],
            "max_tokens": attrs.get("max_completion_tokens") or attrs.get("max_tokens"),
            "temperature": attrs.get("temperature"),
            "parameters": self.chat_parameters(attrs),
            "protocol": "custom",
            "sync": True,
            "stream": bool(attrs.get("stream")),
            "include_usage": bool((attrs.get("stream_options") or {}).get("include_usage")),
            "callback_url": attrs.get("callback_url", ""),
        }


ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Anthropic's other Messages parameters: refused by name until this gateway takes them.
ANTHROPIC_PARAMETERS_NOT_TAKEN = frozenset(
    {"top_k", "service_tier", "container", "mcp_servers", "output_config"}
)
# The content blocks taken, and their fields
ANTHROPIC_BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control"},
    "image": {"type", "source", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    **THINKING_BLOCK_FIELDS,
}
THINKING_TYPES = ("enabled", "adaptive", "disabled")
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for budget_tokens
ANTHROPIC_TOOL_CHOICES = ("auto", "any", "tool", "none")
ANTHROPIC_TOOL_TYPES = ("custom",)  # client tools: Anthropic's server tools are not taken


class ToolUseSerializer(StrictRequestSerializer):
    """A call the assistant made (a tool_use block), becoming an OpenAI tool call."""

    type = serializers.CharField()
    id = StrictCharField(max_length=TOOL_CALL_ID_MAX)
    name = FunctionNameField()
    input = serializers.DictField(validators=[checked_json])
    cache_control = CacheControlField(required=False)


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type"]}}]}
)
class ToolResultContentField(serializers.Field):
    """A tool result's content: a string, or text blocks."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return checked_text(data)
        content = AnthropicContentField().run_validation(data)
        if any(part["type"] != "text" for part in content):
            raise serializers.ValidationError("must be a string or an array of text blocks")
        return "".join(part["text"] for part in content)


class ToolResultSerializer(StrictRequestSerializer):
    """What a tool answered (a tool_result block), becoming an OpenAI tool message."""

    type = serializers.CharField()
    tool_use_id = StrictCharField(max_length=TOOL_CALL_ID_MAX)
    content = ToolResultContentField(required=False)
    is_error = StrictBooleanField(required=False)
    cache_control = CacheControlField(required=False)


class AnthropicToolSerializer(StrictRequestSerializer):
    """A client tool (Anthropic's `tools` item), becoming an OpenAI function tool."""

    type = serializers.ChoiceField(
        choices=ANTHROPIC_TOOL_TYPES,
        required=False,
        error_messages={"invalid_choice": "must be custom: this gateway takes client tools only"},
    )
    name = FunctionNameField()
    description = _description()
    input_schema = JsonSchemaField()
    cache_control = CacheControlField(required=False)


class AnthropicToolChoiceSerializer(StrictRequestSerializer):
    type = one_of(ANTHROPIC_TOOL_CHOICES)
    name = FunctionNameField(required=False)
    disable_parallel_tool_use = StrictBooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return only_with_type(attrs, "tool", field="name")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type"]}},
        ]
    }
)
class AnthropicContentField(serializers.Field):
    """A Messages content: a string, or blocks, validated into OpenAI's content (text parts and image_url
    parts, with their cache_control) for the task."""

    def to_internal_value(self, data: Any) -> str | list[dict[str, Any]]:
        if isinstance(data, str):
            return checked_text(data)
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError("must be a string or a non-empty array of content blocks")
        parts = []
        for index, block in enumerate(data):
            try:
                parts.append(self.block(block))
            except serializers.ValidationError as error:
                raise serializers.ValidationError({index: error.detail}) from None
        return parts

    def block(self, block: Any) -> dict[str, Any]:
        """One block as an OpenAI part; a tool_use or tool_result block as itself, for the message to
        turn into a tool call or a tool message."""
        if not isinstance(block, dict):
            raise serializers.ValidationError("must be an object")
        kind = block.get("type")
        if kind not in ANTHROPIC_BLOCK_FIELDS:
            raise serializers.ValidationError(
                {"type": [f"this gateway takes {', '.join(ANTHROPIC_BLOCK_FIELDS)} blocks"]}
            )
        unknown = sorted(set(block) - ANTHROPIC_BLOCK_FIELDS[kind])
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        return with_breakpoint(self.part(kind, block), block)

    def part(self, kind: str, block: dict[str, Any]) -> dict[str, Any]:
        if kind == "tool_use":
            return {"type": "tool_use", **ToolUseSerializer().run_validation(block)}
        if kind == "tool_result":
            return {"type": "tool_result", **ToolResultSerializer().run_validation(block)}
        if kind in THINKING_BLOCK_FIELDS:
            return ThinkingBlockSerializer().run_validation(block)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise serializers.ValidationError({"text": ["must be a string"]})
            return {"type": "text", "text": checked_text(text)}
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
            raise serializers.ValidationError({"source": ['must be {"type": "base64" or "url", ...}']})
        if source["type"] == "url":
            url, expected = source.get("url"), {"type", "url"}
        else:
            if source.get("media_type") not in ANTHROPIC_IMAGE_TYPES:
                raise serializers.ValidationError(
                    {"source": {"media_type": [f"must be one of {', '.join(ANTHROPIC_IMAGE_TYPES)}"]}}
                )
            data = source.get("data")
            url = f"data:{source['media_type']};base64,{data}" if isinstance(data, str) else None
            expected = {"type", "media_type", "data"}
        unknown = sorted(set(source) - expected)
        if unknown:
            raise serializers.ValidationError({"source": {unknown[0]: ["is not a known field"]}})
        try:
            url = MediaUrlField(kind="image", error_code="invalid_image_url").run_validation(url)
        except serializers.ValidationError as error:
            field = "url" if source["type"] == "url" else "data"
            raise serializers.ValidationError({"source": {field: error.detail}}) from None
        return {"type": "image_url", "image_url": {"url": url}}


class AnthropicMessageSerializer(StrictRequestSerializer):
    role = serializers.ChoiceField(
        choices=("user", "assistant"), error_messages={"invalid_choice": "must be user or assistant"}
    )
    content = AnthropicContentField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI messages this one stands for: its tool_result blocks as tool messages first, then
        the rest, its tool_use blocks as the assistant's tool calls, its thinking blocks as the
        assistant's thinking_blocks."""
        role, content = attrs["role"], attrs["content"]
        if isinstance(content, str):
            return {"openai": [{"role": role, "content": content}]}
        thinking = [part for part in content if part["type"] in THINKING_BLOCK_FIELDS]
        by_type = {kind: [p for p in content if p["type"] == kind] for kind in ("tool_use", "tool_result")}
        rest = [part for part in content if part["type"] not in (*by_type, *THINKING_BLOCK_FIELDS)]
        if thinking and role != "assistant":
            raise _invalid("content", "thinking blocks are only allowed in assistant messages")
        if by_type["tool_use"] and role != "assistant":
            raise _invalid("content", "tool_use blocks are only allowed in assistant messages")
        if by_type["tool_result"] and role != "user":
            raise _invalid("content", "tool_result blocks are only allowed in user messages")
        messages: list[dict[str, Any]] = [
            {
                "role": "tool",
                "tool_call_id": result["tool_use_id"],
                # OpenAI's tool messages have no error flag: the text says it
                "content": ("Error: " if result.get("is_error") else "") + result.get("content", ""),
            }
            for result in by_type["tool_result"]
        ]
        if by_type["tool_use"]:
            calls = [
                {
                    "id": use["id"],
                    "type": "function",
                    "function": {"name": use["name"], "arguments": json.dumps(use["input"])},
                }
                for use in by_type["tool_use"]
            ]
            messages.append({"role": "assistant", "content": rest or None, "tool_calls": calls})
        elif rest or thinking:
            messages.append(media_from_users_only({"role": role, "content": rest or ""}))
        if thinking:
            messages[-1]["thinking_blocks"] = thinking
        return {"openai": messages}


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]})
class AnthropicSystemField(serializers.Field):
    """`system`: a string, or text blocks: joined, unless one marks a cache breakpoint."""

    def to_internal_value(self, data: Any) -> str | list[dict[str, Any]]:
        if isinstance(data, str):
            return checked_text(data)
        content = AnthropicContentField().run_validation(data)
        if isinstance(content, str) or any(part["type"] != "text" for part in content):
            raise serializers.ValidationError("must be a string or an array of text blocks")
        if any("cache_control" in part for part in content):
            return content
        return "\n\n".join(part["text"] for part in content)


class AnthropicThinkingSerializer(StrictRequestSerializer):
    """Extended thinking: on with a budget of tokens (`enabled`), on at the model's choice (`adaptive`), or
    off."""

    type = one_of(THINKING_TYPES)
    budget_tokens = StrictIntegerField(
        min_value=MIN_THINKING_BUDGET, max_value=MAX_TOKENS_LIMIT, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return only_with_type(attrs, "enabled", field="budget_tokens")


class AnthropicMetadataSerializer(StrictRequestSerializer):
    user_id = StrictCharField(max_length=256, required=False, allow_null=True)


class AnthropicMessagesRequestSerializer(StrictRequestSerializer):
    """POST /v1/messages: Anthropic's Messages request, validated into what a generation's custom protocol
    takes (OpenAI chat messages, the system prompt first), always answered in sync mode."""

    not_taken = ANTHROPIC_PARAMETERS_NOT_TAKEN
    not_taken_as = "an Anthropic Messages parameter"

    model = StrictCharField(max_length=200)
    max_tokens = StrictIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT)
    messages = StrictListField(child=AnthropicMessageSerializer(), min_length=1, max_length=MESSAGES_MAX)
    system = AnthropicSystemField(required=False)
    temperature = StrictFloatField(min_value=0, max_value=1, required=False)
    top_p = StrictFloatField(min_value=0, max_value=1, required=False)
    stop_sequences = StrictListField(
        child=StrictCharField(trim_whitespace=False), max_length=STOP_SEQUENCES_MAX, required=False
    )
    stream = StrictBooleanField(default=False)
    metadata = AnthropicMetadataSerializer(required=False)
    tools = StrictListField(
        child=AnthropicToolSerializer(), min_length=1, max_length=TOOLS_MAX, required=False
    )
    tool_choice = AnthropicToolChoiceSerializer(required=False)
    thinking = AnthropicThinkingSerializer(required=False)
    callback_url = CallbackUrlField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        thinking = attrs.get("thinking")
        if thinking and thinking.get("budget_tokens", 0) >= attrs["max_tokens"]:
            raise _invalid(
                "thinking.budget_tokens", "must be less than max_tokens: thinking spends part of them"
            )
        messages = [openai for message in attrs["messages"] for openai in message["openai"]]
        try:
            tool_exchanges_check(messages)
        except serializers.ValidationError:
            raise _invalid(
                "messages",
                "every tool_use block needs a tool_result block answering it in the next user message, "
                "and every tool_result block a tool_use block it answers",
            ) from None
        if attrs.get("system"):
            messages.insert(0, {"role": "system", "content": attrs["system"]})
        parameters: dict[str, Any] = {"top_p": attrs.get("top_p")}
        if attrs.get("stop_sequences"):
            parameters["stop"] = [checked_text(stop) for stop in attrs["stop_sequences"]]
        if attrs.get("tools"):
            parameters["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool["name"],
                        **({"description": tool["description"]} if tool.get("description") else {}),
                        "parameters": tool["input_schema"],
                    },
                    **({"cache_control": tool["cache_control"]} if "cache_control" in tool else {}),
                }
                for tool in attrs["tools"]
            ]
        choice = attrs.get("tool_choice")
        if choice is not None:
            if not attrs.get("tools"):
                raise _invalid("tool_choice", "is only allowed when tools are given")
            if choice["type"] == "tool":
                if choice["name"] not in {tool["name"] for tool in attrs["tools"]}:
                    raise _invalid("tool_choice.name", "is not the name of a tool in tools")
                parameters["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            else:
                parameters["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[
                    choice["type"]
                ]
            if choice.get("disable_parallel_tool_use"):
                parameters["parallel_tool_calls"] = False
        if (attrs.get("metadata") or {}).get("user_id"):
            parameters["user"] = attrs["metadata"]["user_id"]
        thinks = (
            {} if thinking is None else {"reasoning": thinking["type"] != "disabled", "thinking": thinking}
        )
        return {
            "model": attrs["model"],
            "messages": messages,
            "max_tokens": attrs["max_tokens"],
            "temperature": attrs.get("temperature"),
            "parameters": {name: value for name, value in parameters.items() if value is not None},
            "protocol": "custom",
            "sync": True,
            "stream": attrs["stream"],
            "callback_url": attrs.get("callback_url", ""),
            **thinks,
        }


EMBEDDING_INPUTS_MAX = 2048  # OpenAI's limit on inputs per request
EMBEDDING_INPUT_MAX = 100_000  # characters of one input
ENCODING_FORMATS = ("float", "base64")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": EMBEDDING_INPUT_MAX, "pattern": "^[^\\u0000]*$"},
            {
                "type": "array",
                "minItems": 1,
                "maxItems": EMBEDDING_INPUTS_MAX,
                "items": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": EMBEDDING_INPUT_MAX,
                    "pattern": "^[^\\u0000]*$",
                },
            },
        ]
    }
)
class EmbeddingInputField(serializers.Field):
    """A string, or a list of 1 to 2,048 strings, none empty. (OpenAI's token arrays are not taken.)"""

    def to_internal_value(self, data: Any) -> list[str]:
        texts = [data] if isinstance(data, str) else data
        if (
            not isinstance(texts, list)
            or not 0 < len(texts) <= EMBEDDING_INPUTS_MAX
            or not all(isinstance(text, str) and 0 < len(text) <= EMBEDDING_INPUT_MAX for text in texts)
        ):
            raise serializers.ValidationError(
                f"must be a non-empty string or a list of 1 to {EMBEDDING_INPUTS_MAX} such strings, "
                f"each at most {EMBEDDING_INPUT_MAX} characters (token arrays are not taken)"
            )
        return [checked_text(text) for text in texts]


class EmbeddingsRequestSerializer(StrictRequestSerializer):
    """POST /v1/embeddings: OpenAI's Embeddings request, a task of the embedding protocol in sync mode.
    Its inputs are kept as user messages, so the estimate, the admin and retention treat them as any
    prompt."""

    model = StrictCharField(max_length=200)
    input = EmbeddingInputField()
    dimensions = StrictIntegerField(min_value=1, max_value=65_536, required=False)
    encoding_format = one_of(ENCODING_FORMATS, default="float")
    user = StrictCharField(max_length=256, required=False)
    callback_url = CallbackUrlField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        parameters = {"encoding_format": attrs["encoding_format"]}
        if "dimensions" in attrs:
            parameters["dimensions"] = attrs["dimensions"]
        if "user" in attrs:
            parameters["user"] = attrs["user"]
        return {
            "model": attrs["model"],
            "messages": [{"role": "user", "content": text} for text in attrs["input"]],
            "parameters": parameters,
            "protocol": "embedding",
            "sync": True,
            "stream": False,
            "callback_url": attrs.get("callback_url", ""),
        }


def only_with_type(attrs: dict[str, Any], kind: str, *, field: str) -> dict[str, Any]:
    """An object whose `field` is required when its type is `kind`, and refused otherwise."""
    if (attrs["type"] == kind) != (field in attrs):
        raise _invalid(field, f"is required with type {kind}, and only with it")
    return attrs


def _invalid(param: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({param: [message]})


def media_urls(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """(param path, URL) of every media item in a validated request."""
    found = [(f"image_urls[{i}]", url) for i, url in enumerate(attrs.get("image_urls", []))]
    found += [(f"video_urls[{i}]", url) for i, url in enumerate(attrs.get("video_urls", []))]
    if "audio_url" in attrs:
        found.append(("audio_url", attrs["audio_url"]))
    for m, message in enumerate(attrs.get("messages", [])):
        if isinstance(message["content"], list):
            for p, part in enumerate(message["content"]):
                if part["type"] != "text":
                    found.append(
                        (f"messages[{m}].content[{p}].{part['type']}.url", part[part["type"]]["url"])
                    )
    return found


def messages_from(validated: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI chat `messages` a validated request stands for: system prompt first."""
    protocol = validated["protocol"]
    if protocol in ("custom", "embedding"):
        return [dict(message) for message in validated["messages"]]
    messages: list[dict[str, Any]] = []
    if validated.get("system_prompt"):
        messages.append({"role": "system", "content": validated["system_prompt"]})
    if protocol == "text":
        return [*messages, {"role": "user", "content": validated["prompt"]}]
    parts: list[dict[str, Any]] = [{"type": "text", "text": validated.get("prompt") or DEFAULT_AUDIO_PROMPT}]
    if protocol == "vision":
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in validated["image_urls"]]
    elif protocol == "video":
        parts += [{"type": "video_url", "video_url": {"url": url}} for url in validated["video_urls"]]
    else:
        parts.append({"type": "audio_url", "audio_url": {"url": validated["audio_url"]}})
    return [*messages, {"role": "user", "content": parts}]
