"""The fake Gemini provider must be faithful enough that Google's official SDK accepts it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from foxgate.fakes.cli import serving
from foxgate.fakes.gemini import FakeGemini

IMAGE_BYTES = b"\x89PNG\r\n\x1a\n"  # contents are never decoded
HELLO = "hello fake world"
USER_HELLO = {"role": "user", "parts": [{"text": HELLO}]}


def sdk_client(base_url: str, api_key: str = "gm-test", **options: Any) -> genai.Client:
    # HttpRetryOptions(attempts=1): the SDK must surface every error on the first answer.
    http_options = types.HttpOptions(
        base_url=base_url,
        api_version="v1beta",
        timeout=5000,
        retry_options=types.HttpRetryOptions(attempts=1),
        **options,
    )
    return genai.Client(api_key=api_key, http_options=http_options)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture
def client(fake: FakeGemini) -> Iterator[genai.Client]:
    with sdk_client(fake.base_url) as sdk:
        yield sdk


def test_generation_with_system_text_image_and_video(client: genai.Client, fake: FakeGemini) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part.from_text(text="What is this?"),
                    types.Part.from_bytes(data=IMAGE_BYTES, mime_type="image/png"),
                    types.Part.from_uri(file_uri="https://example.com/clip.mp4", mime_type="video/mp4"),
                ],
            )
        ],
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )

    assert response.text == "Echo: What is this? [images: 1] [video: 1]"
    candidate = response.candidates[0]  # type: ignore[index]
    assert candidate.content.role == "model"  # type: ignore[union-attr]
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.index == 0
    assert response.model_version == "gemini-2.5-flash"
    assert response.response_id and len(response.response_id) == 23
    # "Be brief." + "What is this?" is 22 characters -> 6 tokens, 258 for the image, 263 for the video.
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (527, 8, 535)
    assert usage.thoughts_token_count is None
    assert [(d.modality, d.token_count) for d in usage.prompt_tokens_details or []] == [
        (types.MediaModality.TEXT, 6),
        (types.MediaModality.IMAGE, 258),
        (types.MediaModality.VIDEO, 263),
    ]
    [request] = fake.requests
    assert request["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request["headers"]["x-goog-api-key"] == "gm-test"
    assert request["body"]["systemInstruction"]["parts"] == [{"text": "Be brief."}]


def test_audio_of_the_last_user_turn_is_counted(fake: FakeGemini) -> None:
    # The SDK's default API version (v1) is served too.
    with genai.Client(api_key="k", http_options=types.HttpOptions(base_url=fake.base_url)) as sdk:
        response = sdk.models.generate_content(
            model="gemini-2.5-flash",
            contents=[
                types.UserContent(parts=[types.Part.from_bytes(data=IMAGE_BYTES, mime_type="image/jpeg")]),
                types.ModelContent(parts=[types.Part.from_text(text="A picture.")]),
                types.UserContent(
                    parts=[
                        types.Part.from_text(text="transcribe"),
                        types.Part.from_bytes(data=b"RIFF", mime_type="audio/wav"),
                    ]
                ),
            ],
        )

    assert response.text == "Echo: transcribe [audio: 1]"
    assert fake.requests[0]["path"] == "/v1/models/gemini-2.5-flash:generateContent"


def test_thinking_with_thoughts_puts_the_thought_first(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-pro",
        contents=HELLO,
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
        ),
    )

    thought, answer = response.candidates[0].content.parts  # type: ignore[index, union-attr, misc]
    assert (thought.thought, thought.text) == (True, "Thinking about: hello fake world")
    assert not answer.thought
    assert response.text == "Echo: hello fake world"
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (4, 4, 5)
    assert usage.total_token_count == 13


@pytest.mark.parametrize(("budget", "thoughts"), [(1024, 5), (-1, 5), (2, 2), (0, None)])
def test_thinking_budget_without_thoughts_still_bills_them(
    client: genai.Client, budget: int, thoughts: int | None
) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=HELLO,
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=budget)),
    )

    assert [part.text for part in response.candidates[0].content.parts] == ["Echo: hello fake world"]  # type: ignore[index, union-attr]
    assert response.usage_metadata is not None
    assert response.usage_metadata.thoughts_token_count == thoughts


def test_max_output_tokens_truncates_with_max_tokens_finish(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="m", contents=HELLO, config=types.GenerateContentConfig(max_output_tokens=2)
    )

    assert response.text == "Echo: hello"
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS  # type: ignore[index]
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 2


def test_stop_sequences_and_candidate_count(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="m",
        contents=HELLO,
        config=types.GenerateContentConfig(stop_sequences=[" fake"], candidate_count=2),
    )

    assert [c.content.parts[0].text for c in response.candidates] == ["Echo: hello"] * 2  # type: ignore[union-attr, index]
    assert [c.index for c in response.candidates] == [0, 1]  # type: ignore[union-attr]
    assert response.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 4


def test_stream_reassembles_the_plain_reply(client: genai.Client, fake: FakeGemini) -> None:
    plain = client.models.generate_content(model="m", contents=HELLO)
    fake.configure(chunk_count=3)

    chunks = list(client.models.generate_content_stream(model="m", contents=HELLO))

    assert len(chunks) == 3
    assert "".join(chunk.text or "" for chunk in chunks) == plain.text
    assert [chunk.candidates[0].finish_reason for chunk in chunks] == [None, None, types.FinishReason.STOP]  # type: ignore[index]
    assert chunks[-1].usage_metadata == plain.usage_metadata
    # Like Gemini's, every chunk reports the usage so far rather than a delta.
    assert [chunk.usage_metadata.candidates_token_count for chunk in chunks] == [2, 3, 4]  # type: ignore[union-attr]
    assert len({chunk.response_id for chunk in chunks}) == 1
    assert fake.requests[-1]["path"] == "/v1beta/models/m:streamGenerateContent?alt=sse"


def test_stream_with_thoughts_leads_with_the_thought(client: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))

    chunks = list(client.models.generate_content_stream(model="m", contents=HELLO, config=config))

    first = chunks[0].candidates[0].content.parts[0]  # type: ignore[index, union-attr]
    assert (first.thought, first.text) == (True, "Thinking about: hello fake world")
    assert chunks[0].usage_metadata.thoughts_token_count == 5  # type: ignore[union-attr]
    assert "".join(chunk.text or "" for chunk in chunks[1:]) == "Echo: hello fake world"


def test_stream_without_sse_is_a_json_array(fake: FakeGemini) -> None:
    response = httpx.post(
        f"{fake.base_url}/v1beta/models/m:streamGenerateContent",
        json={"contents": [USER_HELLO]},
        headers={"x-goog-api-key": "k"},
    )

    assert response.headers["content-type"].startswith("application/json")
    chunks = response.json()
    assert "".join(chunk["candidates"][0]["content"]["parts"][0]["text"] for chunk in chunks) == (
        "Echo: hello fake world"
    )
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_forced_429_is_a_client_error_with_retry_info(client: genai.Client, fake: FakeGemini) -> None:
    fake.configure(status=429, retry_after=2)

    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="m", contents=HELLO)

    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.response.headers["retry-after"] == "2"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in (
        caught.value.details["error"]["details"]
    )
    assert len(fake.requests) == 1  # the SDK did not retry


@pytest.mark.parametrize(
    ("status", "name"), [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")]
)
def test_forced_5xx_is_a_server_error(client: genai.Client, fake: FakeGemini, status: int, name: str) -> None:
    fake.configure(status=status)

    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model="m", contents=HELLO)

    assert (caught.value.code, caught.value.status) == (status, name)


def test_api_key_knob_rejects_other_keys(client: genai.Client, fake: FakeGemini) -> None:
    fake.configure(api_key="gm-right")

    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="m", contents=HELLO)
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")

    with sdk_client(fake.base_url, api_key="gm-right") as right:
        assert right.models.generate_content(model="m", contents=HELLO).text
    # The key may also come as the ?key= query parameter.
    by_query = httpx.post(
        f"{fake.url}/v1beta/models/m:generateContent?key=gm-right", json={"contents": [USER_HELLO]}
    )
    assert by_query.status_code == 200


def test_validation_failure_is_a_client_error(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model="m", contents=HELLO, config=types.GenerateContentConfig(temperature=3)
        )

    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "temperature value of 3" in (caught.value.message or "")


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        ({}, "* GenerateContentRequest.contents: contents is not specified\n", None),
        (
            {"contents": [{"role": "user", "parts": []}]},
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
            None,
        ),
        (
            {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]},
            "Please use a valid role: user, model.",
            None,
        ),
        (
            {"contents": [USER_HELLO], "temperature": 1},
            'Invalid JSON payload received. Unknown name "temperature": Cannot find field.',
            "",
        ),
        (
            {"contents": [USER_HELLO], "generationConfig": {"max_tokens": 5}},
            "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': "
            "Cannot find field.",
            "generation_config",
        ),
        (
            {"contents": [{"parts": [{"type": "text", "text": "hi"}]}]},
            "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]': "
            "Cannot find field.",
            "contents[0].parts[0]",
        ),
        (
            {"contents": [USER_HELLO], "generationConfig": {"maxOutputTokens": "many"}},
            "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), \"many\"",
            "generation_config.max_output_tokens",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]},
            "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), "
            'Base64 decoding failed for "not base64!"',
            "contents[0].parts[0].inline_data.data",
        ),
        (
            {"contents": [{"parts": [{"thought": True}]}]},
            "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have "
            "one initialized field\n",
            None,
        ),
        (
            {
                "contents": [USER_HELLO],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 128, "thinkingLevel": "LOW"}},
            },
            "You can only set only one of thinking budget and thinking level.",
            None,
        ),
    ],
)
def test_validation_matches_gemini(
    fake: FakeGemini, body: dict[str, Any], message: str, field: str | None
) -> None:
    response = httpx.post(f"{fake.url}/v1beta/models/m:generateContent", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"], error["message"]) == (400, "INVALID_ARGUMENT", message)
    violations = [v for d in error.get("details", []) for v in d.get("fieldViolations", [])]
    assert [v.get("field") for v in violations] == ([] if field is None else [field or None])


def test_snake_case_requests_are_accepted(fake: FakeGemini) -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": HELLO},
                    {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo"}},
                ],
            }
        ],
        "generation_config": {"max_output_tokens": 3, "thinking_config": {"thinking_budget": 0}},
    }

    response = httpx.post(f"{fake.url}/v1beta/models/m:generateContent", json=body)

    assert response.status_code == 200
    candidate = response.json()["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "Echo: hello fake"}]
    assert candidate["finishReason"] == "MAX_TOKENS"


def test_cut_after_makes_the_sdk_stream_raise(client: genai.Client, fake: FakeGemini) -> None:
    fake.configure(cut_after=1)
    received: list[str] = []

    # google-genai 3 talks through httpx2 (httpx if GOOGLE_GENAI_HTTP_CLIENT=httpx).
    with pytest.raises((httpx2.RemoteProtocolError, httpx.RemoteProtocolError)):
        for chunk in client.models.generate_content_stream(model="m", contents=HELLO):
            received.append(chunk.text or "")

    assert received == ["Echo:"]


def test_error_after_ends_the_sdk_stream_with_a_server_error(client: genai.Client, fake: FakeGemini) -> None:
    fake.configure(error_after=2)
    received: list[str] = []

    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model="m", contents=HELLO):
            received.append(chunk.text or "")

    assert received == ["Echo:", " hello"]
    assert (caught.value.code, caught.value.status) == (500, "INTERNAL")


def test_models_list_includes_models_seen(client: genai.Client) -> None:
    client.models.generate_content(model="gemini-seen", contents=HELLO)

    assert [model.name for model in client.models.list()] == ["models/fake-model", "models/gemini-seen"]


def test_control_endpoints_use_google_error_bodies(fake: FakeGemini) -> None:
    with httpx.Client(base_url=fake.url) as http:
        assert http.post("/_fake/config", json={"status": 503}).status_code == 200
        failed = http.post("/v1beta/models/m:generateContent", json={"contents": [USER_HELLO]})
        assert failed.status_code == 503
        assert failed.json()["error"]["status"] == "UNAVAILABLE"

        http.post("/_fake/reset")
        unknown = http.post("/v1beta/models/m:countTokenz", json={})
        assert (unknown.status_code, unknown.json()["error"]["status"]) == (404, "NOT_FOUND")
        recorded = http.get("/_fake/requests").json()
        assert [entry["body"] for entry in recorded] == [{"contents": [USER_HELLO]}, {}]


def test_cli_serves_until_interrupted() -> None:
    with serving("gemini", "--reply", "from the cli") as base_url, sdk_client(base_url) as sdk:
        assert sdk.models.generate_content(model="m", contents=HELLO).text == "from the cli"
