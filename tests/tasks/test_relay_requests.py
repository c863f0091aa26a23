"""Golden tests: the exact upstream request each adapter builds, per protocol and option."""

import httpx
import pytest

from tasks.relay.providers import RELAYS, Upstream, UpstreamError, UpstreamRequest

PNG = "data:image/png;base64,iVBORw0KGgo="
SYSTEM = {"role": "system", "content": "Be brief."}


def user(*parts: dict) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": "Look"}, *parts]}


def part(kind: str, url: str) -> dict:
    return {"type": kind, kind: {"url": url}}


def body(provider: str, request: UpstreamRequest, *, stream: bool = False) -> dict:
    relay = RELAYS[provider](
        httpx.AsyncClient(), Upstream(base_url="http://upstream", api_key="k", timeout=5)
    )
    return relay.body(request, stream=stream) if provider != "gemini" else relay.body(request)


def test_openai_text_with_parameters_and_reasoning():
    request = UpstreamRequest(
        model="gpt-4o",
        messages=[SYSTEM, {"role": "user", "content": "Hi"}],
        max_tokens=50,
        temperature=0.3,
        reasoning=True,
        extra={"top_p": 0.9, "stop": ["END"]},
    )
    assert body("openai", request) == {
        "model": "gpt-4o",
        "messages": [SYSTEM, {"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.3,
        "reasoning_effort": "medium",
        "top_p": 0.9,
        "stop": ["END"],
    }


def test_openai_stream_asks_for_usage_and_keeps_media_parts():
    messages = [
        user(
            part("image_url", PNG), part("video_url", "https://x/v.mp4"), part("audio_url", "https://x/a.mp3")
        )
    ]
    sent = body("openai", UpstreamRequest(model="m", messages=messages), stream=True)
    assert sent == {
        "model": "m",
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_anthropic_system_images_and_default_max_tokens():
    messages = [SYSTEM, user(part("image_url", PNG), part("image_url", "https://x/cat.jpg"))]
    sent = body(
        "anthropic",
        UpstreamRequest(
            model="claude-sonnet-4",
            messages=messages,
            temperature=0.5,
            default_max_tokens=64000,
            extra={"stop": "END"},
        ),
    )
    assert sent == {
        "model": "claude-sonnet-4",
        "max_tokens": 64000,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
                ],
            }
        ],
        "temperature": 0.5,
        "stop_sequences": ["END"],
    }


def test_anthropic_reasoning_is_extended_thinking_within_max_tokens():
    messages = [{"role": "user", "content": "Think"}]
    sent = body(
        "anthropic",
        UpstreamRequest(model="c", messages=messages, max_tokens=8000, temperature=0.2, reasoning=True),
        stream=True,
    )
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert "temperature" not in sent and sent["stream"] is True  # Anthropic refuses temperature with thinking
    small = body("anthropic", UpstreamRequest(model="c", messages=messages, max_tokens=1000, reasoning=True))
    assert "thinking" not in small  # no room for the 1024-token minimum budget


def test_anthropic_conversation_keeps_roles_in_order():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    sent = body("anthropic", UpstreamRequest(model="c", messages=messages))
    assert sent["messages"] == messages and "system" not in sent


def test_gemini_contents_parts_and_generation_config():
    messages = [
        SYSTEM,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        user(
            part("image_url", PNG),
            part("video_url", "https://x/clip.mov"),
            part("audio_url", "https://x/a.wav"),
        ),
    ]
    sent = body(
        "gemini",
        UpstreamRequest(
            model="gemini-2.5-pro",
            messages=messages,
            max_tokens=100,
            temperature=0.7,
            reasoning=True,
            extra={"top_p": 0.8, "stop": "END"},
        ),
    )
    assert sent == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {
                "role": "user",
                "parts": [
                    {"text": "Look"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"fileData": {"mimeType": "video/quicktime", "fileUri": "https://x/clip.mov"}},
                    {"fileData": {"mimeType": "audio/x-wav", "fileUri": "https://x/a.wav"}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.7,
            "topP": 0.8,
            "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True},
        },
    }


@pytest.mark.parametrize(
    ("reasoning", "config"), [(False, {"thinkingConfig": {"thinkingBudget": 0}}), (None, None)]
)
def test_gemini_reasoning_off_or_unset(reasoning, config):
    sent = body(
        "gemini", UpstreamRequest(model="g", messages=[{"role": "user", "content": "x"}], reasoning=reasoning)
    )
    assert sent.get("generationConfig") == config


def test_gemini_urls_without_a_known_extension_get_the_parts_default_type():
    sent = body(
        "gemini", UpstreamRequest(model="g", messages=[user(part("video_url", "https://youtu.be/abc"))])
    )
    assert sent["contents"][0]["parts"][1] == {
        "fileData": {"mimeType": "video/mp4", "fileUri": "https://youtu.be/abc"}
    }


BREAKPOINT = {"type": "ephemeral", "ttl": "1h"}
CACHED = [
    {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": BREAKPOINT}]},
    {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]},
]
CACHED_TOOL = {"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}


def test_anthropic_gets_the_cache_breakpoints_of_system_parts_and_tools():
    sent = body("anthropic", UpstreamRequest(model="c", messages=CACHED, extra={"tools": [CACHED_TOOL]}))
    assert sent["system"] == [{"type": "text", "text": "Long rules.", "cache_control": BREAKPOINT}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}
    ]
    assert sent["tools"][0]["cache_control"] == {"type": "ephemeral"}
    plain = body(
        "anthropic", UpstreamRequest(model="c", messages=[SYSTEM, {"role": "user", "content": "Hi"}])
    )
    assert plain["system"] == "Be brief."  # no breakpoint: the system prompt stays one string


def test_openai_compatible_upstreams_get_no_cache_breakpoints():
    sent = body("openai", UpstreamRequest(model="m", messages=CACHED, extra={"tools": [CACHED_TOOL]}))
    assert sent["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Long rules."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    assert sent["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert CACHED[0]["content"][0]["cache_control"] == BREAKPOINT  # the task's request is left as it was


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_a_provider_without_logprobs_refuses_them_for_another_channel_to_serve(provider):
    """Model rules refuse logprobs for Claude and Gemini by name; a model of another name on such a
    channel fails over rather than answer without them."""
    request = UpstreamRequest(
        model="m", messages=[{"role": "user", "content": "Hi"}], extra={"logprobs": True}
    )
    with pytest.raises(UpstreamError, match="do not return logprobs") as refused:
        body(provider, request)
    assert refused.value.retryable
