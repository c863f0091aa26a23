"""Input validation for the public API: every rule of API.md's field tables lives here."""

import base64
import binascii
import re
from typing import Any

from rest_framework import serializers

PROMPT_MAX = 100_000
SYSTEM_PROMPT_MAX = 10_000
MEDIA_ITEMS_MAX = 10
_DATA_IMAGE = re.compile(
    r"^data:image/(?P<type>[a-z0-9.+-]+);base64,(?P<payload>.*)$", re.IGNORECASE | re.DOTALL
)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else: DRF's own field would take "yes", 1 or "false"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ImageUrlField(StrictCharField):
    """An http(s) URL, or a data URI of an image whose base64 payload really decodes."""

    default_error_messages = {
        "invalid_image_url": "must be an http(s):// URL or a data:image/<type>;base64,<payload> URI",
        "invalid_base64": "is a data URI whose base64 payload does not decode",
    }

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        if url.startswith(("http://", "https://")) and len(url) > len("https://"):
            return url
        match = _DATA_IMAGE.match(url)
        if not match:
            raise serializers.ValidationError(
                self.error_messages["invalid_image_url"], code="invalid_image_url"
            )
        try:
            base64.b64decode(match["payload"], validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError(
                self.error_messages["invalid_base64"], code="invalid_image_url"
            ) from None
        return url


class GenerationRequestSerializer(serializers.Serializer):
    model = StrictCharField(max_length=200)
    prompt = StrictCharField(max_length=PROMPT_MAX, required=False, trim_whitespace=False)
    system_prompt = StrictCharField(
        max_length=SYSTEM_PROMPT_MAX, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    image_urls = serializers.ListField(
        child=ImageUrlField(), min_length=1, max_length=MEDIA_ITEMS_MAX, required=False
    )
    max_tokens = StrictIntegerField(min_value=1, required=False, allow_null=True)
    temperature = StrictFloatField(min_value=0, max_value=2, required=False, allow_null=True)
    reasoning = StrictBooleanField(required=False, allow_null=True)
    sync = StrictBooleanField(default=False)
    stream = StrictBooleanField(default=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["is not a known field"]})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "prompt" not in attrs:
            raise serializers.ValidationError({"prompt": ["This field is required."]})
        attrs["protocol"] = "vision" if "image_urls" in attrs else "text"
        return attrs


def messages_from(validated: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI chat `messages` a validated request stands for: system prompt first."""
    messages: list[dict[str, Any]] = []
    if validated.get("system_prompt"):
        messages.append({"role": "system", "content": validated["system_prompt"]})
    if validated["protocol"] == "vision":
        parts: list[dict[str, Any]] = [{"type": "text", "text": validated["prompt"]}]
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in validated["image_urls"]]
        messages.append({"role": "user", "content": parts})
    else:
        messages.append({"role": "user", "content": validated["prompt"]})
    return messages
