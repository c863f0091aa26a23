"""Each provider end to end through the running stack: the caller always gets an OpenAI ChatCompletion."""

import pytest
from openai.types.chat import ChatCompletion

from tests.helpers import PNG_DATA_URI, anthropic_and_gemini_channels, poll_until_finished, tenant_client

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(stack, stack_db):
    with anthropic_and_gemini_channels() as (anthropic, gemini), tenant_client(stack, "providers") as c:
        c.anthropic, c.gemini = anthropic, gemini
        yield c


def run(client, body: dict) -> ChatCompletion:
    response = client.post("/v1/llm/generations", json=body)
    assert response.status_code == 200, response.json()
    task = poll_until_finished(client, response.json()["id"])
    assert task["status"] == "completed", task
    return ChatCompletion.model_validate(task["results"][0])


def test_anthropic_serves_vision_under_its_upstream_name(client):
    completion = run(
        client,
        {
            "model": "claude-sonnet-4",
            "prompt": "What is it?",
            "system_prompt": "Be brief.",
            "image_urls": [PNG_DATA_URI, "https://example.com/cat.jpg"],
        },
    )
    assert completion.choices[0].message.content == "Echo: What is it? [images: 2]"
    sent = client.anthropic.requests[-1]["body"]
    assert sent["model"] == "claude-sonnet-4-20250514" and sent["system"] == "Be brief."
    assert sent["max_tokens"] == 64_000  # the family's output cap, as the caller gave none


def test_gemini_takes_video_and_audio(client):
    video = run(
        client, {"model": "gemini-2.5-flash", "prompt": "Summarise", "video_urls": ["https://x/clip.mp4"]}
    )
    assert video.choices[0].message.content == "Echo: Summarise [video: 1]"
    audio = run(client, {"model": "gemini-2.5-flash", "audio_url": "https://x/talk.mp3"})
    assert audio.choices[0].message.content == "Echo: Transcribe this audio. [audio: 1]"
    assert client.gemini.requests[-1]["body"]["contents"][0]["parts"][1] == {
        "fileData": {"mimeType": "audio/mpeg", "fileUri": "https://x/talk.mp3"}
    }


def test_reasoning_reaches_each_provider_in_its_own_terms(client):
    claude = run(
        client, {"model": "claude-sonnet-4", "prompt": "Think", "reasoning": True, "max_tokens": 4000}
    )
    assert client.anthropic.requests[-1]["body"]["thinking"]["type"] == "enabled"
    assert claude.choices[0].message.model_extra["reasoning_content"].startswith("Thinking about:")
    gemini = run(client, {"model": "gemini-2.5-flash", "prompt": "Think", "reasoning": True})
    assert client.gemini.requests[-1]["body"]["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert gemini.usage.completion_tokens_details.reasoning_tokens > 0
