"""The public API's input rules (API.md's field tables) and the shapes of its outputs."""

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

PROMPT_MAX = 100_000
SYSTEM_PROMPT_MAX = 10_000
MEDIA_ITEMS_MAX = 10
MESSAGES_MAX = 1_000
STOP_SEQUENCES_MAX = 4
VIDEO_EXTENSIONS = (".mp4", ".mpeg", ".mpg", ".mov", ".webm")
VIDEO_PAGE_HOSTS = ("youtube.com", "www.youtube.com", "youtu.be")  # pages Gemini takes in place of a file
DEFAULT_AUDIO_PROMPT = "Transcribe this audio."
# No "tool": FoxAPI has no tool definitions, so there are no tool calls for a tool message to answer.
ROLES = ("system", "developer", "user", "assistant")
MAX_TOKENS_LIMIT = 1_000_000  # above any model's output; keeps credit arithmetic in range
IMAGE_DETAILS = ("auto", "low", "high")
PART_TYPES = ("text", "image_url", "video_url", "audio_url", "file_url")
PROTOCOL_FIELDS = ("messages", "audio_url", "video_urls", "image_urls")  # the field that picks each protocol
PROTOCOLS = {"messages": "custom", "audio_url": "audio", "video_urls": "video", "image_urls": "vision"}
CUSTOM_ONLY_FIELDS = ("top_p", "stop")
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
        unknown = sorted(set(part) - {"type", kind})
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
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


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=ROLES, error_messages={"invalid_choice": "must be one of " + ", ".join(ROLES)}
    )
    content = ContentField()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return media_from_users_only(attrs)


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


class GenerationRequestSerializer(StrictRequestSerializer):
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
    top_p = StrictFloatField(min_value=0, max_value=1, required=False, allow_null=True)
    stop = StopField(required=False, allow_null=True)
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
            for name in CUSTOM_ONLY_FIELDS:
                if name in attrs:
                    raise _invalid(name, "is only accepted with messages (the custom protocol)")
        if attrs["sync"]:
            for param, url in media_urls(attrs):
                if is_inline(url):
                    raise _invalid(param, "inline base64 media is accepted in async mode only; send a URL")
        attrs["protocol"] = protocol
        return attrs


class StreamOptionsSerializer(StrictRequestSerializer):
    include_usage = StrictBooleanField(default=False)


# OpenAI's other Chat Completions parameters: refused by name, not as unknown (a 422 either way).
OPENAI_CHAT_PARAMETERS_NOT_TAKEN = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "metadata",
        "modalities", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
        "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "store",
        "tool_choice", "tools", "top_logprobs", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip


class ChatCompletionRequestSerializer(StrictRequestSerializer):
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
    top_p = StrictFloatField(min_value=0, max_value=1, required=False, allow_null=True)
    stop = StopField(required=False, allow_null=True)
    n = StrictIntegerField(min_value=1, max_value=1, required=False, allow_null=True)
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
            "top_p": attrs.get("top_p"),
            "stop": attrs.get("stop"),
            "protocol": "custom",
            "sync": True,
            "stream": bool(attrs.get("stream")),
            "include_usage": bool((attrs.get("stream_options") or {}).get("include_usage")),
        }


ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Anthropic's other Messages parameters and blocks: refused by name until this gateway takes them.
ANTHROPIC_PARAMETERS_NOT_TAKEN = frozenset(
    {"tools", "tool_choice", "thinking", "top_k", "service_tier", "container", "mcp_servers"}
)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type"]}},
        ]
    }
)
class AnthropicContentField(serializers.Field):
    """A Messages content: a string, or text and image blocks, validated into OpenAI's content (text
    parts and image_url parts) for the task. `cache_control` on a block is accepted; it does not reach
    the upstream yet."""

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
        if not isinstance(block, dict):
            raise serializers.ValidationError("must be an object")
        kind = block.get("type")
        if kind not in ("text", "image"):
            raise serializers.ValidationError(
                {"type": ["this gateway takes text and image blocks; others are not taken yet"]}
            )
        unknown = sorted(set(block) - {"type", "cache_control", "text" if kind == "text" else "source"})
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        cache_control = block.get("cache_control", {"type": "ephemeral"})
        if (
            not isinstance(cache_control, dict)
            or cache_control.get("type") != "ephemeral"
            or not set(cache_control) <= {"type", "ttl"}
            or cache_control.get("ttl", "5m") not in ("5m", "1h")
        ):
            raise serializers.ValidationError(
                {"cache_control": ['must be {"type": "ephemeral"} with ttl 5m or 1h']}
            )
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
        return media_from_users_only(attrs)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]})
class AnthropicSystemField(serializers.Field):
    """`system`: a string, or text blocks (joined)."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return checked_text(data)
        content = AnthropicContentField().run_validation(data)
        if isinstance(content, str) or any(part["type"] != "text" for part in content):
            raise serializers.ValidationError("must be a string or an array of text blocks")
        return "\n\n".join(part["text"] for part in content)


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
    metadata = AnthropicMetadataSerializer(required=False)  # accepted; not stored yet

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        messages = [dict(message) for message in attrs["messages"]]
        if attrs.get("system"):
            messages.insert(0, {"role": "system", "content": attrs["system"]})
        return {
            "model": attrs["model"],
            "messages": messages,
            "max_tokens": attrs["max_tokens"],
            "temperature": attrs.get("temperature"),
            "top_p": attrs.get("top_p"),
            "stop": [checked_text(stop) for stop in attrs["stop_sequences"]]
            if attrs.get("stop_sequences")
            else None,
            "protocol": "custom",
            "sync": True,
            "stream": attrs["stream"],
        }


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
    if protocol == "custom":
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
