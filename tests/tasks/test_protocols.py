"""Every protocol end to end through the running stack, asserting what the upstream receives."""

import pytest
from openai.types.chat import ChatCompletion

from tests.helpers import PNG_DATA_URI as PNG
from tests.helpers import poll_until_finished, upstream_requests

pytestmark = pytest.mark.e2e


def run(stack, client, body: dict) -> tuple[ChatCompletion, dict]:
    """Submit async, poll to completion; the validated ChatCompletion and the upstream request body."""
    response = client.post("/v1/llm/generations", json={"model": "fake-model", **body})
    assert response.status_code == 200, response.json()
    task = poll_until_finished(client, response.json()["id"])
    assert task["status"] == "completed", task
    (sent,) = upstream_requests(stack)
    return ChatCompletion.model_validate(task["results"][0]), sent["body"]


def test_text_sends_system_prompt_first_and_passes_parameters(stack, stack_api):
    completion, sent = run(
        stack,
        stack_api,
        {"prompt": "Hi", "system_prompt": "Be terse.", "temperature": 0.2, "max_tokens": 40},
    )
    assert sent["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    assert (sent["temperature"], sent["max_tokens"], sent["model"]) == (0.2, 40, "fake-model")
    assert completion.choices[0].message.content == "Echo: Hi"


def test_vision_sends_images_as_content_parts_in_order(stack, stack_api):
    urls = ["https://example.com/a.jpg", PNG]
    completion, sent = run(stack, stack_api, {"prompt": "Compare", "image_urls": urls})
    (message,) = sent["messages"]
    assert message["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": urls[0]}},
        {"type": "image_url", "image_url": {"url": urls[1]}},
    ]
    assert completion.choices[0].message.content == "Echo: Compare [images: 2]"


def test_video_sends_video_url_parts(stack, stack_api):
    url = "https://example.com/clip.mp4"
    completion, sent = run(
        stack, stack_api, {"prompt": "Summarise", "video_urls": [url], "system_prompt": "S"}
    )
    assert sent["messages"][0] == {"role": "system", "content": "S"}
    assert sent["messages"][1]["content"] == [
        {"type": "text", "text": "Summarise"},
        {"type": "video_url", "video_url": {"url": url}},
    ]
    assert completion.choices[0].message.content == "Echo: Summarise"


def test_audio_defaults_to_a_transcription_prompt(stack, stack_api):
    url = "https://example.com/talk.mp3"
    completion, sent = run(stack, stack_api, {"audio_url": url})
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Transcribe this audio."},
        {"type": "audio_url", "audio_url": {"url": url}},
    ]
    assert completion.choices[0].message.content == "Echo: Transcribe this audio."


def test_custom_messages_pass_through_with_top_p_and_stop(stack, stack_api):
    messages = [
        {"role": "system", "content": "You are a cat."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Meow"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "low"}},
            ],
        },
    ]
    completion, sent = run(stack, stack_api, {"messages": messages, "top_p": 0.9, "stop": ["\n\n"]})
    assert sent["messages"] == messages
    assert sent["top_p"] == 0.9 and sent["stop"] == ["\n\n"]
    assert completion.choices[0].message.content == "Echo: And this? [images: 1]"


def test_custom_messages_pass_the_openai_chat_parameters_through(stack, stack_api):
    """FoxAPI's custom protocol: the OpenAI chat parameters reach the upstream as sent; the caller's
    attribution (user, metadata) and n = 1 stay with the gateway."""
    parameters = {
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 3,
        "response_format": {"type": "json_object"},
    }
    attribution = {"user": "end-user-1", "metadata": {"team": "search"}, "n": 1}
    messages = [{"role": "user", "content": "Hello"}]
    completion, sent = run(stack, stack_api, {"messages": messages, **parameters, **attribution})
    assert {name: sent.get(name) for name in parameters} == parameters
    assert not set(attribution) & set(sent)
    assert all(len(token.top_logprobs) == 3 for token in completion.choices[0].logprobs.content)
