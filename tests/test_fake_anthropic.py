"""The fake Anthropic provider must be faithful enough that the official SDK accepts it."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.cli import serving

PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAE="  # contents are never decoded
HELLO: list[Any] = [{"role": "user", "content": "hello fake world"}]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
# Mid-stream, the SDK lets its HTTP library's errors through unwrapped; that library is httpx in
# older releases and httpx2 in newer ones, so find it from the SDK's own client class.
HTTP_LIBRARY = importlib.import_module(
    inspect.getmro(anthropic.DefaultHttpxClient)[1].__module__.partition(".")[0]
)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0, timeout=5) as sdk:
        yield sdk


def test_message_with_text_images_and_system(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    message = client.messages.create(
        model="claude-fake",
        max_tokens=100,
        system="Be brief.",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )

    assert message.id.startswith("msg_")
    assert message._request_id is not None
    assert message._request_id.startswith("req_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-fake")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Echo: What is this? [images: 2]"  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    # "Be brief." is 9 characters -> 3 tokens, "What is this?" 13 -> 4, plus 1600 per image; 6 words out.
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (3207, 6)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    [request] = fake.requests
    assert (request["method"], request["path"]) == ("POST", "/v1/messages")
    assert request["headers"]["anthropic-version"]


def test_thinking_comes_first_and_counts_as_output(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="m", max_tokens=2048, thinking=THINKING, messages=HELLO)

    thinking, text = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Thinking about: hello fake world"
    assert thinking.signature
    assert text.type == "text"
    assert text.text == "Echo: hello fake world"
    assert message.usage.output_tokens == 5 + 4


def test_max_tokens_truncates_with_max_tokens_stop(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="m", max_tokens=2, messages=HELLO)

    assert message.content[0].text == "Echo: hello"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


def test_stop_sequence_cuts_the_reply(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="m", max_tokens=50, messages=HELLO, stop_sequences=["world", "fake"]
    )

    assert message.content[0].text == "Echo: hello "  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "fake")


def test_prompt_cache_is_created_then_read(client: anthropic.Anthropic) -> None:
    system: Any = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first_turn: Any = {
        "role": "user",
        "content": [{"type": "text", "text": "hello fake world", "cache_control": {"type": "ephemeral"}}],
    }

    first = client.messages.create(model="m", max_tokens=50, system=system, messages=[first_turn])
    # Both breakpoints are new: the system's 3 tokens are written for 1h, the turn's 4 for 5m.
    assert first.usage.input_tokens == 0
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (7, 0)
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 3
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 4

    follow_up = [
        first_turn,
        {"role": "assistant", "content": "Echo: hello fake world"},
        {"role": "user", "content": "again"},
    ]
    second = client.messages.create(model="m", max_tokens=50, system=system, messages=follow_up)
    # The whole first prompt is read back; the new turns (22 and 5 characters) are plain input.
    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (7, 0)
    assert second.usage.input_tokens == 6 + 2

    other_model = client.messages.create(model="other", max_tokens=50, system=system, messages=[first_turn])
    assert other_model.usage.cache_read_input_tokens == 0


def test_stream_reassembles_the_plain_message(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    plain = client.messages.create(model="m", max_tokens=2048, thinking=THINKING, messages=HELLO)
    fake.configure(chunk_count=3)

    with client.messages.stream(model="m", max_tokens=2048, thinking=THINKING, messages=HELLO) as stream:
        events = list(stream)
        final = stream.get_final_message()

    text_deltas = [
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]
    assert len(text_deltas) == 3
    assert events[0].type == "message_start"
    assert [event.type for event in events[-2:]] == ["message_delta", "message_stop"]
    assert [block.to_dict() for block in final.content] == [block.to_dict() for block in plain.content]
    assert final.usage == plain.usage
    assert (final.stop_reason, final.stop_sequence) == (plain.stop_reason, plain.stop_sequence)


def test_stream_wire_format(fake: FakeAnthropic) -> None:
    body = {"model": "m", "max_tokens": 2048, "thinking": THINKING, "messages": HELLO, "stream": True}
    with httpx.stream("POST", f"{fake.url}/v1/messages", json=body, headers=HEADERS) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["request-id"].startswith("req_")
        raw = response.read().decode()

    events = [dict(line.split(": ", 1) for line in chunk.splitlines()) for chunk in raw.strip().split("\n\n")]
    for event in events:
        assert json.loads(event["data"])["type"] == event["event"]
    names = [event["event"] for event in events]
    deltas = [
        json.loads(event["data"])["delta"] for event in events if event["event"] == "content_block_delta"
    ]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert [delta["type"] for delta in deltas] == ["thinking_delta"] * 5 + ["signature_delta"] + [
        "text_delta"
    ] * 4
    assert names[-2:] == ["message_delta", "message_stop"]
    started = json.loads(events[0]["data"])["message"]
    assert (started["content"], started["stop_reason"]) == ([], None)
    assert started["usage"]["input_tokens"] == 4
    finished = json.loads(events[-2]["data"])
    assert finished["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert finished["usage"]["output_tokens"] == 9


def test_forced_429_surfaces_as_rate_limit_error(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.configure(status=429, retry_after=2)

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="m", max_tokens=10, messages=HELLO)

    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.type == "rate_limit_error"
    assert caught.value.request_id is not None
    assert caught.value.request_id == caught.value.response.json()["request_id"]


def test_forced_529_surfaces_as_overloaded(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.configure(status=529)

    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="m", max_tokens=10, messages=HELLO)

    assert caught.value.status_code == 529
    assert caught.value.type == "overloaded_error"
    assert caught.value.api_message == "Overloaded"


def test_api_key_knob_rejects_other_keys(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.configure(api_key="sk-ant-right")

    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="m", max_tokens=10, messages=HELLO)
    assert caught.value.type == "authentication_error"

    # Older SDK releases send the key as x-api-key, newer ones as a bearer token: both are accepted.
    with anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-right", max_retries=0) as right:
        assert right.messages.create(model="m", max_tokens=10, messages=HELLO).content
    body = {"model": "m", "max_tokens": 10, "messages": HELLO}
    for key in ("sk-ant-right", "sk-ant-wrong"):
        response = httpx.post(f"{fake.url}/v1/messages", json=body, headers={**HEADERS, "x-api-key": key})
        assert response.status_code == (200 if key == "sk-ant-right" else 401)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_tokens": anthropic.omit}, "max_tokens: Field required"),
        (
            {"messages": [{"role": "assistant", "content": "hi"}, *HELLO]},
            'messages: first message must use the "user" role',
        ),
        ({"extra_body": {"temperature": 1.5}}, "temperature: range: 0..1"),
    ],
)
def test_validation_failure_is_a_bad_request(
    client: anthropic.Anthropic, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**{"model": "m", "max_tokens": 10, "messages": HELLO, **changes})

    assert caught.value.type == "invalid_request_error"
    assert caught.value.api_message == message


def _image(media_type: str) -> dict[str, Any]:
    source = {"type": "base64", "media_type": media_type, "data": PNG_BASE64}
    return {"role": "user", "content": [{"type": "image", "source": source}]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"messages": []}, "messages: at least one message is required"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages.0.role: Input should be"),
        ({"messages": [_image("image/bmp")]}, "messages.0.content.0.image.source.base64.media_type:"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 512}},
            "thinking.enabled.budget_tokens: Input should be greater",
        ),
        ({"thinking": THINKING}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({"stop_sequences": "fake"}, "stop_sequences: Input should be a valid list"),
        ({"n": 2}, "n: Extra inputs are not permitted"),
    ],
)
def test_validation_messages(fake: FakeAnthropic, changes: dict[str, Any], message: str) -> None:
    body = {"model": "m", "max_tokens": 100, "messages": HELLO, **changes}
    response = httpx.post(f"{fake.url}/v1/messages", json=body, headers=HEADERS)

    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(message)


def test_anthropic_version_header_is_required(fake: FakeAnthropic) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": HELLO}
    response = httpx.post(f"{fake.url}/v1/messages", json=body, headers={"x-api-key": "k"})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "anthropic-version: header is required"


def test_cut_after_makes_the_sdk_stream_raise(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.configure(cut_after=1)
    received: list[str] = []

    with (
        pytest.raises((anthropic.APIConnectionError, HTTP_LIBRARY.TransportError)),
        client.messages.stream(model="m", max_tokens=10, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)

    assert received == ["Echo:"]


def test_error_after_ends_the_stream_with_an_error_event(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    fake.configure(error_after=2)
    received: list[str] = []

    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="m", max_tokens=10, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)

    assert received == ["Echo:", " hello"]
    assert caught.value.type == "overloaded_error"


def test_models_list_includes_models_seen(client: anthropic.Anthropic) -> None:
    client.messages.create(model="claude-seen", max_tokens=10, messages=HELLO)

    assert [model.id for model in client.models.list()] == ["fake-model", "claude-seen"]
    assert client.models.retrieve("claude-seen").display_name == "claude-seen"


def test_reset_forgets_the_prompt_cache(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    def cached_call() -> anthropic.types.Usage:
        return client.messages.create(
            model="m", max_tokens=10, messages=HELLO, extra_body={"cache_control": {"type": "ephemeral"}}
        ).usage

    assert cached_call().cache_creation_input_tokens == 4
    assert cached_call().cache_read_input_tokens == 4
    with httpx.Client(base_url=fake.url) as http:
        assert http.post("/_fake/reset").status_code == 200
    assert cached_call().cache_creation_input_tokens == 4


def test_cli_serves_until_interrupted() -> None:
    with serving("anthropic", "--reply", "from the cli") as base_url:
        with anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0, timeout=5) as sdk:
            message = sdk.messages.create(model="m", max_tokens=10, messages=HELLO)
        assert message.content[0].text == "from the cli"  # type: ignore[union-attr]
