"""The fake providers must be faithful enough that the official SDKs accept them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from foxgate.fakes.cli import serving
from foxgate.fakes.openai import FakeOpenAI

IMAGE_DATA_URI = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE="  # contents are never decoded
HELLO = [{"role": "user", "content": "hello fake world"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=5) as sdk:
        yield sdk


def test_completion_with_text_and_image(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": IMAGE_DATA_URI}},
                ],
            },
        ],
    )

    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: What is this? [images: 1]"
    assert choice.finish_reason == "stop"
    # "Be brief." + "What is this?" is 22 characters -> 6 tokens, plus 85 for the image; 6 words out.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (91, 6)
    assert completion.usage.total_tokens == 97


def test_max_tokens_truncates_with_length_finish(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="m", messages=HELLO, max_tokens=2)

    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


def test_stream_with_usage_reassembles_the_plain_reply(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    plain = client.chat.completions.create(model="m", messages=HELLO)
    fake.configure(chunk_count=3)

    chunks = list(
        client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        chunk.choices[0].delta.content
        for chunk in chunks[1:]
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(pieces) == 3
    assert "".join(pieces) == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage


def test_forced_429_surfaces_as_rate_limit_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(status=429, retry_after=2)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=HELLO)

    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"


def test_api_key_knob_rejects_other_keys(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(api_key="sk-right")

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.code == "invalid_api_key"

    with openai.OpenAI(base_url=fake.base_url, api_key="sk-right", max_retries=0) as right:
        assert right.chat.completions.create(model="m", messages=HELLO).choices[0].message.content


def test_validation_failure_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=HELLO, temperature=3)

    assert caught.value.param == "temperature"
    assert caught.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"model": "m", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_validation_names_the_offending_param(fake: FakeOpenAI, body: dict[str, object], param: str) -> None:
    response = httpx.post(f"{fake.base_url}/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_vllm_video_parts_are_accepted(client: openai.OpenAI) -> None:
    content = [
        {"type": "text", "text": "summarise"},
        {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}},
    ]
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}])  # type: ignore[list-item]

    assert completion.choices[0].message.content == "Echo: summarise"


def test_latency_knob_delays_the_answer(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(latency=0.3)

    started = time.monotonic()
    client.chat.completions.create(model="m", messages=HELLO)

    assert time.monotonic() - started >= 0.3


def test_cut_after_makes_the_sdk_stream_raise(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(cut_after=1)
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["", "Echo:"]


def test_error_after_ends_the_stream_with_an_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(error_after=1)
    received: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="m", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["", "Echo:"]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "server_error"


def test_hang_holds_until_the_client_gives_up(fake: FakeOpenAI) -> None:
    fake.configure(hang=True)

    with (
        openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=0.3) as impatient,
        pytest.raises(openai.APITimeoutError),
    ):
        impatient.chat.completions.create(model="m", messages=HELLO)


def test_requests_are_recorded(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    client.chat.completions.create(model="m", messages=HELLO, max_tokens=50)

    [request] = fake.requests
    assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["body"] == {"model": "m", "messages": HELLO, "max_tokens": 50}
    fake.clear_requests()
    assert fake.requests == []


def test_models_list_includes_models_seen(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-seen", messages=HELLO)

    assert [model.id for model in client.models.list()] == ["fake-model", "gpt-seen"]


def test_unknown_knob_is_a_type_error(fake: FakeOpenAI) -> None:
    with pytest.raises(TypeError):
        fake.configure(latencyy=1)
    with pytest.raises(TypeError):
        FakeOpenAI(nope=True)


def test_control_endpoints_over_http(fake: FakeOpenAI) -> None:
    with httpx.Client(base_url=fake.url) as http:
        configured = http.post("/_fake/config", json={"status": 503, "reply": "hi"})
        assert configured.status_code == 200
        assert configured.json()["status"] == 503
        assert http.post("/_fake/config", json={"bogus": 1}).status_code == 400

        failed = http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
        assert failed.status_code == 503
        assert failed.json()["error"]["type"] == "server_error"

        assert http.post("/_fake/reset").json()["status"] is None
        answered = http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
        assert answered.json()["choices"][0]["message"]["content"] == "Echo: hello fake world"

        recorded = http.get("/_fake/requests").json()
        assert [entry["path"] for entry in recorded] == ["/v1/chat/completions"] * 2
        assert http.delete("/_fake/requests").status_code == 200
        assert http.get("/_fake/requests").json() == []


def test_cli_serves_until_interrupted() -> None:
    with serving("openai", "--reply", "from the cli") as base_url:
        assert base_url.endswith("/v1")
        with openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=5) as sdk:
            completion = sdk.chat.completions.create(model="m", messages=HELLO)
        assert completion.choices[0].message.content == "from the cli"
