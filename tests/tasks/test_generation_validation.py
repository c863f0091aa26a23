"""Every way a POST /v1/llm/generations can be refused before it costs anything.

One table: each row is a bad request and the exact error API.md promises for it (status, type, code and
the `param` path). A refused request must leave nothing behind, so every row also checks that no task and
no credit hold were written.
"""

import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tasks.models import Model, Task
from tasks.services import channel_add, price_set
from tenants.models import LedgerEntry, ModelRuleOverride, Tenant
from tests.helpers import PNG_DATA_URI as PNG

pytestmark = pytest.mark.django_db

URL = "/v1/llm/generations"
INVALID = "invalid_request_error"

MP4 = "data:video/mp4;base64,AAAAIGZ0eXBpc29tAAACAGlzb21pc28y"
MP3 = "data:audio/mpeg;base64,SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4"
PDF = "data:application/pdf;base64,JVBERi0xLjQK"
IMG = "https://example.com/cat.png"
VID = "https://example.com/clip.mp4"
AUD = "https://example.com/talk.mp3"
GEMINI = "gemini-2.5-pro"  # takes images, video and audio: media rows use it so only the media is wrong

# Models the catalog fixture prices and serves; each name picks a family in tasks/model_rules.py.
SERVED_MODELS = (
    "fake-model",
    "text-only-model",
    "claude-sonnet-4-5",
    "claude-3-5-haiku",
    "o1-mini",
    "o3-mini",
    "gpt-5",
    "deepseek-reasoner",
    "deepseek-chat",
    "gpt-4-vision-preview",
    "gpt-4o-mini",
    "gpt-3.5-turbo",
    GEMINI,
    "qwen3-thinking",
    "capped-model",
    "retired-model",
)

NOT_JSON = (400, INVALID, "invalid_json", None)
NOT_JSON_TYPE = (400, INVALID, "unsupported_content_type", None)
TOO_LARGE = (413, INVALID, "request_too_large", None)
MISSING_KEY = (401, "authentication_error", "missing_api_key", None)
BAD_KEY = (401, "authentication_error", "invalid_api_key", None)
EXPIRED_KEY = (401, "authentication_error", "expired_api_key", None)
SUSPENDED = (403, "permission_error", "tenant_suspended", None)
NOT_ALLOWED = (403, "permission_error", "model_not_allowed", "model")
CANNOT_COVER = (402, "insufficient_quota", "insufficient_balance", None)
NO_ROUTE = (404, "not_found", "not_found", None)
# API.md has no 405 row; the code answers 405 in the envelope, which is what HTTP asks for.
NO_METHOD = (405, INVALID, "method_not_allowed", None)
NO_MODEL = (422, INVALID, "model_not_found", "model")
NO_CHANNEL = (503, "service_unavailable_error", "no_available_channel", None)


def invalid(param: str | None) -> tuple[int, str, str, str | None]:
    return (422, INVALID, "invalid_param", param)


def bad_image(param: str) -> tuple[int, str, str, str]:
    return (422, INVALID, "invalid_image_url", param)


def rule(param: str) -> tuple[int, str, str, str]:
    return (422, INVALID, "model_rule_violation", param)


DROP = object()  # a field the row leaves out of the base request


def text(**fields: Any) -> dict[str, Any]:
    """A valid text request to fake-model, changed by `fields` (DROP removes one)."""
    body = {"model": "fake-model", "prompt": "Hello"} | fields
    return {name: value for name, value in body.items() if value is not DROP}


def gemini(**fields: Any) -> dict[str, Any]:
    return text(model=GEMINI, **fields)


def chat(*messages: Any, **fields: Any) -> dict[str, Any]:
    """A custom-protocol request; with no messages given, one plain user message."""
    body = {"model": "fake-model", "messages": list(messages) or [{"role": "user", "content": "Hi"}]} | fields
    return {name: value for name, value in body.items() if value is not DROP}


def user(*parts: Any) -> dict[str, Any]:
    """A user message whose content starts with a text part, so the given parts sit at content[1:]."""
    return {"role": "user", "content": [{"type": "text", "text": "Look:"}, *parts]}


def part(kind: str, url: Any) -> dict[str, Any]:
    return {"type": kind, kind: {"url": url}}


@dataclass(frozen=True)
class Call:
    """One request and the state it is sent in."""

    body: Any = None  # JSON-encoded unless `raw` is given
    raw: bytes | None = None
    content_type: str = "application/json"
    method: str = "POST"
    path: str = URL
    auth: str = "key"  # see authorization()
    override: dict[str, Any] = field(default_factory=dict)  # a ModelRuleOverride of the tenant
    max_request_bytes: int | None = None


def raw(data: bytes | str, content_type: str = "application/json") -> Call:
    return Call(raw=data.encode() if isinstance(data, str) else data, content_type=content_type)


def case(case_id: str, request: dict[str, Any] | Call, expected: tuple, **options: Any) -> Any:
    """A row: a JSON body (or a Call), the error it must get, and the state to send it in."""
    call = request if isinstance(request, Call) else Call(body=request)
    return pytest.param(replace(call, **options), expected, id=case_id)


ROWS = [
    # --- transport: body encoding, content type, size --------------------------------------------------
    case("json-malformed", raw("{not json"), NOT_JSON),
    case("json-truncated", raw('{"model": "fake-model", "prompt": "Hi"'), NOT_JSON),
    case("json-not-utf8", raw(b'{"model": "fake-model", "prompt": "\xff\xfe"}'), NOT_JSON),
    # NaN is not JSON (RFC 8259) and DRF's own parser refuses it: it must not reach field validation.
    case("json-nan-literal", raw('{"model": "fake-model", "prompt": "Hi", "temperature": NaN}'), NOT_JSON),
    # Pathological nesting is the client's fault: a 400, never a 500.
    case("json-nested-too-deep", raw("[" * 100_000 + "]" * 100_000), NOT_JSON),
    # Valid JSON that is not an object: API.md is silent; the serializer refuses the body as a whole.
    case("json-array-body", raw("[1, 2]"), invalid(None)),
    case("json-string-body", raw('"Hello"'), invalid(None)),
    case("json-null-body", raw("null"), invalid(None)),
    # DRF reads an empty body as an empty object, so the first required field is named.
    case("json-empty-body", raw(""), invalid("model")),
    case("content-type-text-plain", raw("model=fake-model", "text/plain"), NOT_JSON_TYPE),
    case("content-type-form", raw("model=fake-model", "application/x-www-form-urlencoded"), NOT_JSON_TYPE),
    case(
        "content-type-multipart",
        raw(b"--x\r\n\r\nfake-model\r\n--x--\r\n", "multipart/form-data; boundary=x"),
        NOT_JSON_TYPE,
    ),
    case(
        "content-type-json-variant", Call(body=text(), content_type="application/vnd.api+json"), NOT_JSON_TYPE
    ),
    case("body-over-max-request-bytes", text(prompt="x" * 2_000), TOO_LARGE, max_request_bytes=1_000),
    # --- authentication comes before the body is even read ---------------------------------------------
    case("auth-missing", text(), MISSING_KEY, auth="none"),
    case("auth-unknown-key", text(), BAD_KEY, auth="garbage"),
    case("auth-basic-scheme", text(), BAD_KEY, auth="basic"),
    case("auth-bearer-without-key", text(), BAD_KEY, auth="bearer-only"),
    case("auth-revoked-key", text(), BAD_KEY, auth="revoked"),
    case("auth-expired-key", text(), EXPIRED_KEY, auth="expired"),
    case("auth-suspended-tenant", text(), SUSPENDED, auth="suspended"),
    case("auth-before-json", raw("{not json"), MISSING_KEY, auth="none"),
    # --- routing: paths and methods that do not exist still get the envelope ---------------------------
    case("route-typo", text(), NO_ROUTE, path="/v1/llm/generation"),
    case("route-trailing-slash", text(), NO_ROUTE, path="/v1/llm/generations/"),
    case("route-responses-path", text(), NO_ROUTE, path="/v1/responses"),  # OpenAI's Responses: not served
    case("method-get", Call(), NO_METHOD, method="GET"),
    case("method-put", text(), NO_METHOD, method="PUT"),
    case("method-delete", Call(), NO_METHOD, method="DELETE"),
    # --- model -----------------------------------------------------------------------------------------
    case("model-missing", text(model=DROP), invalid("model")),
    case("model-null", text(model=None), invalid("model")),
    case("model-blank", text(model=""), invalid("model")),
    case("model-number", text(model=42), invalid("model")),
    case("model-array", text(model=["fake-model"]), invalid("model")),
    case("model-too-long", text(model="m" * 201), invalid("model")),
    case("model-nul-character", text(model="fake\x00model"), invalid("model")),
    case("model-unknown", text(model="no-such-model"), NO_MODEL),
    case("model-wrong-case", text(model="FAKE-MODEL"), NO_MODEL),
    case("model-unpriced", text(model="unpriced-model"), NO_MODEL),
    case("model-disabled-in-catalog", text(model="retired-model"), NO_MODEL),
    # --- prompt and system_prompt ----------------------------------------------------------------------
    case("prompt-missing-no-protocol", text(prompt=DROP), invalid("prompt")),
    case("prompt-missing-system-only", text(prompt=DROP, system_prompt="Be brief."), invalid("prompt")),
    case("prompt-missing-vision", text(prompt=DROP, image_urls=[IMG]), invalid("prompt")),
    case("prompt-missing-video", gemini(prompt=DROP, video_urls=[VID]), invalid("prompt")),
    case("prompt-null", text(prompt=None), invalid("prompt")),
    case("prompt-blank", text(prompt=""), invalid("prompt")),
    case("prompt-number", text(prompt=123), invalid("prompt")),
    case("prompt-array", text(prompt=["Hello"]), invalid("prompt")),
    case("prompt-object", text(prompt={"text": "Hello"}), invalid("prompt")),
    case("prompt-100001-chars", text(prompt="x" * 100_001), invalid("prompt")),
    case("prompt-nul-character", text(prompt="a\x00b"), invalid("prompt")),
    case("prompt-lone-surrogate", text(prompt="a\ud800b"), invalid("prompt")),
    case("system-prompt-10001-chars", text(system_prompt="x" * 10_001), invalid("system_prompt")),
    case("system-prompt-number", text(system_prompt=7), invalid("system_prompt")),
    case("system-prompt-array", text(system_prompt=["Be brief."]), invalid("system_prompt")),
    # --- image_urls ------------------------------------------------------------------------------------
    case("image-urls-empty", text(image_urls=[]), invalid("image_urls")),
    case("image-urls-11-items", text(image_urls=[IMG] * 11), invalid("image_urls")),
    case("image-urls-string", text(image_urls=IMG), invalid("image_urls")),
    case("image-urls-object", text(image_urls={"url": IMG}), invalid("image_urls")),
    case("image-urls-null", text(image_urls=None), invalid("image_urls")),
    case("image-urls-item-number", text(image_urls=[IMG, 42]), invalid("image_urls[1]")),
    case("image-urls-item-null", text(image_urls=[IMG, None]), invalid("image_urls[1]")),
    case("image-url-ftp", text(image_urls=["ftp://example.com/cat.png"]), bad_image("image_urls[0]")),
    case("image-url-javascript", text(image_urls=["javascript:alert(1)"]), bad_image("image_urls[0]")),
    case("image-url-no-scheme", text(image_urls=["example.com/cat.png"]), bad_image("image_urls[0]")),
    case("image-url-no-host", text(image_urls=["https://"]), bad_image("image_urls[0]")),
    case(
        "image-url-bad-base64-third",
        text(image_urls=[IMG, PNG, "data:image/png;base64,@@@"]),
        bad_image("image_urls[2]"),
    ),
    case("image-url-bad-base64-padding", text(image_urls=[PNG[:-3]]), bad_image("image_urls[0]")),
    case(
        "image-url-data-not-image",
        text(image_urls=[IMG, "data:text/plain;base64,aGVsbG8="]),
        bad_image("image_urls[1]"),
    ),
    case(
        "image-url-data-empty-payload",
        text(image_urls=["data:image/png;base64,"]),
        bad_image("image_urls[0]"),
    ),
    case(
        "image-url-data-not-base64",
        text(image_urls=["data:image/png,iVBORw0KGgo="]),
        bad_image("image_urls[0]"),
    ),
    # --- video_urls ------------------------------------------------------------------------------------
    case("video-urls-empty", gemini(video_urls=[]), invalid("video_urls")),
    case("video-urls-11-items", gemini(video_urls=[VID] * 11), invalid("video_urls")),
    case("video-urls-string", gemini(video_urls=VID), invalid("video_urls")),
    case(
        "video-url-not-a-file",
        gemini(video_urls=["https://example.com/watch?v=abc"]),
        invalid("video_urls[0]"),
    ),
    case(
        "video-url-unlisted-ending",
        gemini(video_urls=[VID, "https://example.com/clip.avi"]),
        invalid("video_urls[1]"),
    ),
    case("video-url-rtsp", gemini(video_urls=["rtsp://example.com/clip.mp4"]), invalid("video_urls[0]")),
    case("video-url-image-data-uri", gemini(video_urls=[PNG]), invalid("video_urls[0]")),
    # --- audio_url -------------------------------------------------------------------------------------
    case("audio-url-file-scheme", gemini(audio_url="file:///tmp/talk.mp3"), invalid("audio_url")),
    case("audio-url-array", gemini(audio_url=[AUD]), invalid("audio_url")),
    case("audio-url-null", gemini(audio_url=None), invalid("audio_url")),
    case("audio-url-image-data-uri", gemini(audio_url=PNG), invalid("audio_url")),
    case("audio-url-bad-base64", gemini(audio_url="data:audio/mpeg;base64,%%%"), invalid("audio_url")),
    # --- one protocol per request; the later field in API.md's protocol order is named -----------------
    case("mixed-images-and-videos", gemini(image_urls=[IMG], video_urls=[VID]), invalid("image_urls")),
    case("mixed-images-and-audio", gemini(image_urls=[IMG], audio_url=AUD), invalid("image_urls")),
    case("mixed-video-and-audio", gemini(video_urls=[VID], audio_url=AUD), invalid("video_urls")),
    case("mixed-messages-and-prompt", chat(prompt="Hello"), invalid("prompt")),
    case("mixed-messages-and-audio", chat(audio_url=AUD), invalid("audio_url")),
    case("mixed-messages-and-images", chat(image_urls=[IMG]), invalid("image_urls")),
    case("top-p-without-messages", text(top_p=0.5), invalid("top_p")),
    case("stop-without-messages", text(stop=["\n"]), invalid("stop")),
    case("stop-with-audio", gemini(prompt=DROP, audio_url=AUD, stop="END"), invalid("stop")),
    # --- generation parameters -------------------------------------------------------------------------
    case("max-tokens-zero", text(max_tokens=0), invalid("max_tokens")),
    case("max-tokens-negative", text(max_tokens=-1), invalid("max_tokens")),
    case("max-tokens-fraction", text(max_tokens=1.5), invalid("max_tokens")),
    case("max-tokens-float", text(max_tokens=100.0), invalid("max_tokens")),
    case("max-tokens-string", text(max_tokens="100"), invalid("max_tokens")),
    case("max-tokens-boolean", text(max_tokens=True), invalid("max_tokens")),
    # Above any model's output: refused as a field rule before any credit arithmetic.
    case("max-tokens-above-limit", text(max_tokens=1_000_001), invalid("max_tokens")),
    case("max-tokens-1e20", text(max_tokens=10**20), invalid("max_tokens")),
    case("temperature-below-0", text(temperature=-0.1), invalid("temperature")),
    case("temperature-above-2", text(temperature=2.01), invalid("temperature")),
    case("temperature-string", text(temperature="0.7"), invalid("temperature")),
    case("temperature-boolean", text(temperature=True), invalid("temperature")),
    case("top-p-above-1", chat(top_p=1.01), invalid("top_p")),
    case("top-p-below-0", chat(top_p=-0.01), invalid("top_p")),
    case("top-p-string", chat(top_p="0.9"), invalid("top_p")),
    case("stop-empty-list", chat(stop=[]), invalid("stop")),
    case("stop-five-sequences", chat(stop=["a", "b", "c", "d", "e"]), invalid("stop")),
    case("stop-non-string-item", chat(stop=["a", 1]), invalid("stop")),
    case("stop-null-item", chat(stop=["a", None]), invalid("stop")),
    case("stop-number", chat(stop=7), invalid("stop")),
    # Text that PostgreSQL cannot store is refused like it is in prompt, not left to fail on insert.
    case("stop-nul-character", chat(stop="\x00"), invalid("stop")),
    case("stop-lone-surrogate", chat(stop=["\udfff"]), invalid("stop")),
    case("reasoning-string-true", text(reasoning="true"), invalid("reasoning")),
    case("reasoning-one", text(reasoning=1), invalid("reasoning")),
    case("sync-string-true", text(sync="true"), invalid("sync")),
    case("sync-one", text(sync=1), invalid("sync")),
    case("sync-null", text(sync=None), invalid("sync")),
    case("stream-string-false", text(stream="false"), invalid("stream")),
    case("stream-zero", text(stream=0), invalid("stream")),
    case("stream-null", text(stream=None), invalid("stream")),
    # --- unknown fields are named, never dropped -------------------------------------------------------
    case("unknown-field-n", text(n=2), invalid("n")),
    case("unknown-field-openai-name", text(max_completion_tokens=10), invalid("max_completion_tokens")),
    case("unknown-field-wrong-case", text(Prompt="Hello"), invalid("Prompt")),
    case("unknown-field-before-type-errors", text(model=42, zeta=1), invalid("zeta")),
    case(
        "message-unknown-field",
        chat({"role": "user", "content": "Hi", "name": "bob"}),
        invalid("messages[0].name"),
    ),
    case(
        "text-part-unknown-field",
        chat(user({"type": "text", "text": "x", "cache_control": {}})),
        invalid("messages[0].content[1].cache_control"),
    ),
    case(
        "image-part-unknown-field",
        chat(user({"type": "image_url", "image_url": {"url": IMG}, "detail": "high"})),
        invalid("messages[0].content[1].detail"),
    ),
    # OpenAI's `detail` (auto, low, high) is forwarded; anything else inside image_url is refused.
    case(
        "image-part-url-object-unknown-field",
        chat(user({"type": "image_url", "image_url": {"url": IMG, "colour": "red"}})),
        invalid("messages[0].content[1].image_url.colour"),
    ),
    case(
        "image-part-detail-unknown-value",
        chat(user({"type": "image_url", "image_url": {"url": IMG, "detail": "ultra"}})),
        invalid("messages[0].content[1].image_url.detail"),
    ),
    # a tool message answers a call of the assistant message before it, by the call's id
    case(
        "tool-message-without-call-id",
        chat({"role": "tool", "content": "42"}),
        invalid("messages[0].tool_call_id"),
    ),
    case(
        "tool-message-answering-no-call",
        chat({"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "42"}),
        invalid("messages[1].tool_call_id"),
    ),
    case("messages-with-system-prompt", chat(system_prompt="Be brief."), invalid("system_prompt")),
    # --- messages --------------------------------------------------------------------------------------
    case("messages-empty", chat(messages=[]), invalid("messages")),
    case("messages-string", chat(messages="Hi"), invalid("messages")),
    case("messages-null", chat(messages=None), invalid("messages")),
    case("message-not-object", chat({"role": "user", "content": "Hi"}, "Hi again"), invalid("messages[1]")),
    case("message-role-missing", chat({"content": "Hi"}), invalid("messages[0].role")),
    case("message-role-unknown", chat({"role": "bot", "content": "Hi"}), invalid("messages[0].role")),
    case("message-role-wrong-case", chat({"role": "USER", "content": "Hi"}), invalid("messages[0].role")),
    case("message-role-number", chat({"role": 1, "content": "Hi"}), invalid("messages[0].role")),
    case("message-content-missing", chat({"role": "user"}), invalid("messages[0].content")),
    case("message-content-null", chat({"role": "user", "content": None}), invalid("messages[0].content")),
    case("message-content-empty-list", chat({"role": "user", "content": []}), invalid("messages[0].content")),
    case("message-content-number", chat({"role": "user", "content": 5}), invalid("messages[0].content")),
    case(
        "message-content-object",
        chat({"role": "user", "content": {"text": "Hi"}}),
        invalid("messages[0].content"),
    ),
    case("message-content-nul", chat({"role": "user", "content": "a\x00b"}), invalid("messages[0].content")),
    case(
        "message-content-surrogate",
        chat({"role": "user", "content": "a\ud800"}),
        invalid("messages[0].content"),
    ),
    case("part-not-object", chat(user("a picture")), invalid("messages[0].content[1]")),
    case("part-type-missing", chat(user({"text": "Hi"})), invalid("messages[0].content[1].type")),
    case(
        "part-type-image",
        chat(user({"type": "image", "image": {"url": IMG}})),
        invalid("messages[0].content[1].type"),
    ),
    case(
        "part-type-input-audio",
        chat(user({"type": "input_audio", "input_audio": {"data": "AAAA"}})),
        invalid("messages[0].content[1].type"),
    ),
    case("text-part-text-missing", chat(user({"type": "text"})), invalid("messages[0].content[1].text")),
    case(
        "text-part-text-number",
        chat(user({"type": "text", "text": 5})),
        invalid("messages[0].content[1].text"),
    ),
    case(
        "text-part-text-nul",
        chat(user({"type": "text", "text": "\x00"})),
        invalid("messages[0].content[1].text"),
    ),
    case(
        "image-part-url-as-string",
        chat(user({"type": "image_url", "image_url": IMG})),
        invalid("messages[0].content[1].image_url"),
    ),
    case(
        "image-part-url-missing",
        chat(user({"type": "image_url"})),
        invalid("messages[0].content[1].image_url"),
    ),
    case(
        "image-part-url-object-empty",
        chat(user({"type": "image_url", "image_url": {}})),
        invalid("messages[0].content[1].image_url"),
    ),
    case(
        "image-part-url-number",
        chat(user(part("image_url", 5))),
        invalid("messages[0].content[1].image_url.url"),
    ),
    case(
        "image-part-url-ftp",
        chat(user(part("image_url", "ftp://x.org/a.png"))),
        bad_image("messages[0].content[1].image_url.url"),
    ),
    case(
        "image-part-bad-base64",
        chat(user(part("image_url", IMG), part("image_url", "data:image/png;base64,!!"))),
        bad_image("messages[0].content[2].image_url.url"),
    ),
    case(
        "second-message-bad-part",
        chat({"role": "system", "content": "Be brief."}, user(part("image_url", "nope"))),
        bad_image("messages[1].content[1].image_url.url"),
    ),
    case(
        "video-part-not-a-file",
        chat(user(part("video_url", "https://x.org/page"))),
        invalid("messages[0].content[1].video_url.url"),
    ),
    case(
        "audio-part-bad-scheme",
        chat(user(part("audio_url", "gopher://x.org/a.mp3"))),
        invalid("messages[0].content[1].audio_url.url"),
    ),
    case(
        "file-part-image-data-uri",
        chat(user(part("file_url", PNG))),
        invalid("messages[0].content[1].file_url.url"),
    ),
    # --- inline media is accepted in async mode only ---------------------------------------------------
    case("sync-inline-image", text(image_urls=[IMG, PNG], sync=True), invalid("image_urls[1]")),
    case("sync-inline-video", gemini(video_urls=[MP4], sync=True), invalid("video_urls[0]")),
    case("sync-inline-audio", gemini(prompt=DROP, audio_url=MP3, sync=True), invalid("audio_url")),
    case(
        "sync-inline-image-in-message",
        chat(user(part("image_url", IMG), part("image_url", PNG)), sync=True),
        invalid("messages[0].content[2].image_url.url"),
    ),
    case(
        "sync-inline-file-in-message",
        chat(user(part("file_url", PDF)), sync=True),
        invalid("messages[0].content[1].file_url.url"),
    ),
    # --- model-intrinsic rules (tasks/model_rules.py) --------------------------------------------------
    case(
        "rule-claude-temperature-above-1",
        text(model="claude-sonnet-4-5", temperature=1.5),
        rule("temperature"),
    ),
    case("rule-o1-temperature-not-1", text(model="o1-mini", temperature=0.5), rule("temperature")),
    case("rule-o3-temperature-zero", text(model="o3-mini", temperature=0), rule("temperature")),
    case("rule-gpt5-temperature-not-1", text(model="gpt-5", temperature=0.7), rule("temperature")),
    case("rule-o1-reasoning-false", text(model="o1-mini", reasoning=False), rule("reasoning")),
    case(
        "rule-deepseek-reasoner-no-reasoning",
        text(model="deepseek-reasoner", reasoning=False),
        rule("reasoning"),
    ),
    case(
        "rule-thinking-model-no-reasoning", text(model="qwen3-thinking", reasoning=False), rule("reasoning")
    ),
    case("rule-deepseek-chat-reasoning", text(model="deepseek-chat", reasoning=True), rule("reasoning")),
    case("rule-gpt4o-reasoning", text(model="gpt-4o-mini", reasoning=True), rule("reasoning")),
    case("rule-deepseek-chat-images", text(model="deepseek-chat", image_urls=[IMG]), rule("image_urls")),
    case("rule-gpt35-images", text(model="gpt-3.5-turbo", image_urls=[IMG]), rule("image_urls")),
    case(
        "rule-text-only-catalog-images", text(model="text-only-model", image_urls=[IMG]), rule("image_urls")
    ),
    case("rule-no-video-capability", text(video_urls=[VID]), rule("video_urls")),
    case("rule-no-audio-capability", text(prompt=DROP, audio_url=AUD), rule("audio_url")),
    case("rule-claude-audio", text(model="claude-sonnet-4-5", prompt=DROP, audio_url=AUD), rule("audio_url")),
    # A custom request has no image_urls, video_urls or audio_url: param must point into messages, at the
    # first part the model cannot take.
    case(
        "rule-images-in-messages",
        chat(user(part("image_url", IMG)), model="deepseek-chat"),
        rule("messages[0].content[1]"),
    ),
    case("rule-video-in-messages", chat(user(part("video_url", VID))), rule("messages[0].content[1]")),
    case("rule-audio-in-messages", chat(user(part("audio_url", AUD))), rule("messages[0].content[1]")),
    case(
        "rule-gpt4-vision-needs-max-tokens",
        text(model="gpt-4-vision-preview", image_urls=[IMG]),
        rule("max_tokens"),
    ),
    case(
        "rule-gpt4-vision-output-cap",
        text(model="gpt-4-vision-preview", max_tokens=4_097),
        rule("max_tokens"),
    ),
    case(
        "rule-claude-haiku-output-cap", text(model="claude-3-5-haiku", max_tokens=8_193), rule("max_tokens")
    ),
    case("rule-deepseek-chat-output-cap", text(model="deepseek-chat", max_tokens=8_193), rule("max_tokens")),
    case("rule-catalog-output-cap", text(model="capped-model", max_tokens=1_001), rule("max_tokens")),
    # --- tenant overrides (ModelRuleOverride) only tighten ---------------------------------------------
    case(
        "override-max-images",
        gemini(image_urls=[IMG] * 3),
        rule("image_urls"),
        override={"model_pattern": "gemini-*", "max_images": 2},
    ),
    case(
        "override-no-images",
        text(image_urls=[IMG]),
        rule("image_urls"),
        override={"model_pattern": "fake-model", "max_images": 0},
    ),
    case(
        "override-max-output-tokens",
        text(max_tokens=101),
        rule("max_tokens"),
        override={"model_pattern": "fake-model", "max_output_tokens": 100},
    ),
    case(
        "override-family-output-cap",
        text(model="claude-sonnet-4-5", max_tokens=2_000),
        rule("max_tokens"),
        override={"model_pattern": "claude-*", "max_output_tokens": 1_000},
    ),
    case(
        "override-forces-reasoning",
        text(reasoning=False),
        rule("reasoning"),
        override={"model_pattern": "fake-model", "reasoning": "required"},
    ),
    case(
        "override-forbids-reasoning",
        text(model="claude-sonnet-4-5", reasoning=True),
        rule("reasoning"),
        override={"model_pattern": "claude-*", "reasoning": "refused"},
    ),
    case(
        "override-disabled-model",
        text(),
        NOT_ALLOWED,
        override={"model_pattern": "fake-model", "disabled": True},
    ),
    case(
        "override-disabled-family",
        text(model="gpt-4o-mini"),
        NOT_ALLOWED,
        override={"model_pattern": "GPT-4O*", "disabled": True},
    ),
    # --- admission -------------------------------------------------------------------------------------
    case("no-channel", text(model="unserved-model"), NO_CHANNEL),
    case("only-disabled-channel", text(model="dark-channel-model"), NO_CHANNEL),
]


def priced(name: str, capabilities: list[str] | None = None) -> None:
    price_set(
        model_name=name,
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
        capabilities=capabilities,
    )


@pytest.fixture
def catalog(priced_model, fake_openai):
    """Every model the rows name, priced and served by one channel, plus the ones that cannot be served."""
    for name in SERVED_MODELS[1:]:
        priced(name, ["text"] if name == "text-only-model" else None)
    Model.objects.filter(name="capped-model").update(max_output_tokens=1_000)
    Model.objects.filter(name="retired-model").update(enabled=False)
    channel_add(
        name="everything",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="",
        model_names=[*SERVED_MODELS, "unpriced-model"],
    )
    priced("unserved-model")
    priced("dark-channel-model")
    dark = channel_add(
        name="dark",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="",
        model_names=["dark-channel-model"],
    )
    dark.enabled = False
    dark.save(update_fields=["enabled"])


def authorization(auth: str, issued_key) -> str | None:
    """The Authorization header for a row's `auth`, after putting the key or its tenant in that state."""
    api_key = issued_key.api_key
    if auth == "none":
        return None
    if auth == "garbage":
        return "Bearer sk-notarealkeynotarealkeynotarealkey"
    if auth == "basic":
        return "Basic YWNtZTpzZWNyZXQ="
    if auth == "bearer-only":
        return "Bearer"
    if auth == "revoked":
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    elif auth == "expired":
        api_key.expires_at = timezone.now() - timedelta(minutes=1)
        api_key.save(update_fields=["expires_at"])
    elif auth == "suspended":
        Tenant.objects.filter(pk=api_key.tenant_id).update(status=Tenant.Status.SUSPENDED)
    return f"Bearer {issued_key.secret}"


@pytest.mark.parametrize(("call", "expected"), ROWS)
def test_bad_generation_request_is_refused_with_the_documented_error(
    call, expected, catalog, tenant, issued_key, settings
):
    # Bounded, so a row that wrongly gets through in sync mode fails fast instead of waiting for a worker.
    settings.SYNC_WAIT_SECONDS = 1
    if call.max_request_bytes is not None:
        settings.MAX_REQUEST_BYTES = call.max_request_bytes
    if call.override:
        ModelRuleOverride.objects.create(tenant=tenant, **call.override)
    header = authorization(call.auth, issued_key)
    headers = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    if call.raw is not None:
        data = call.raw
    else:
        data = json.dumps(call.body).encode() if call.body is not None else b""

    response = APIClient().generic(call.method, call.path, data, content_type=call.content_type, **headers)

    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    assert (response.status_code, error["type"], error["code"], error["param"]) == expected, error
    assert isinstance(error["message"], str) and error["message"].strip()
    assert not Task.objects.exists()
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD).exists()
    tenant.refresh_from_db()
    assert tenant.held == 0
