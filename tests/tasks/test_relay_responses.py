"""Golden tests: what each adapter makes of its provider's answers (served by the fakes over real HTTP):
the ChatCompletion, the chunk stream, usage with cache and reasoning tokens, and classified errors."""

import httpx
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.gemini import FakeGemini
from foxgate.fakes.openai import FakeOpenAI
from tasks.relay.providers import RELAYS, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.relay.providers.anthropic import anthropic_usage
from tests.helpers import PNG_DATA_URI as PNG

FAKES = {"openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}


@pytest.fixture(params=list(FAKES))
def provider(request):
    with FAKES[request.param](api_key="sk-upstream") as fake:
        yield request.param, fake


def relay(provider_name: str, fake):
    return RELAYS[provider_name](
        http_client(), Upstream(base_url=fake.base_url, api_key="sk-upstream", timeout=5)
    )


def request(**fields) -> UpstreamRequest:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
    ]
    return UpstreamRequest(
        **{"model": "fake-model", "messages": messages, "default_max_tokens": 1000} | fields
    )


def collect(provider_name, fake, upstream_request) -> list[dict]:
    async def gather():
        return [c async for c in relay(provider_name, fake).stream(upstream_request)]

    return run_async(gather())


def test_completion_text_finish_and_usage(provider):
    name, fake = provider
    result = run_async(relay(name, fake).complete(request()))
    completion = ChatCompletion.model_validate(result)
    assert completion.choices[0].message.content == "Echo: Describe this [images: 1]"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == 5 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_cut_is_finish_reason_length(provider):
    name, fake = provider
    result = run_async(relay(name, fake).complete(request(max_tokens=2)))
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["choices"][0]["message"]["content"] == "Echo: Describe"


def test_stream_chunks_reassemble_the_completion(provider):
    name, fake = provider
    chunks = collect(name, fake, request())
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: Describe this [images: 1]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert len({c["id"] for c in chunks}) == 1


def test_anthropic_cache_tokens_count_as_prompt_and_cached_tokens():
    """Anthropic reports cached input apart from input; OpenAI's prompt tokens include it."""
    cached_prefix = {
        "model": "fake-model",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello fake world"}],
    }
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    with FakeAnthropic() as fake:
        written = httpx.post(f"{fake.url}/v1/messages", json=cached_prefix, headers=headers).json()["usage"]
        read = httpx.post(f"{fake.url}/v1/messages", json=cached_prefix, headers=headers).json()["usage"]
    assert written["cache_creation_input_tokens"] > 0 and read["cache_read_input_tokens"] > 0
    for recorded in (written, read):
        mapped = anthropic_usage(recorded, recorded["output_tokens"])
        assert mapped["prompt_tokens"] == (
            recorded["input_tokens"]
            + recorded["cache_read_input_tokens"]
            + recorded["cache_creation_input_tokens"]
        )
        assert mapped["prompt_tokens_details"]["cached_tokens"] == recorded["cache_read_input_tokens"]
        assert mapped["cache_creation_input_tokens"] == recorded["cache_creation_input_tokens"]


def test_anthropic_thinking_becomes_reasoning_content():
    with FakeAnthropic() as fake:
        thinking = request(max_tokens=4000, reasoning=True)
        result = run_async(relay("anthropic", fake).complete(thinking))
        assert result["choices"][0]["message"]["reasoning_content"].startswith("Thinking about:")
        chunks = collect("anthropic", fake, thinking)
        reasoning = "".join(
            c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]
        )
        assert reasoning == result["choices"][0]["message"]["reasoning_content"]
        assert fake.requests[-1]["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2000}


def test_gemini_thoughts_are_reasoning_content_and_reasoning_tokens():
    with FakeGemini() as fake:
        result = run_async(relay("gemini", fake).complete(request(reasoning=True)))
        message = result["choices"][0]["message"]
        assert message["content"] == "Echo: Describe this [images: 1]"
        assert message["reasoning_content"].startswith("Thinking about:")
        reasoning_tokens = result["usage"]["completion_tokens_details"]["reasoning_tokens"]
        assert reasoning_tokens > 0 and result["usage"]["completion_tokens"] == 5 + reasoning_tokens


@pytest.mark.parametrize(
    ("knobs", "code", "retryable", "auth"),
    [
        ({"status": 500}, "upstream_error", True, False),
        ({"status": 503}, "upstream_error", True, False),
        ({"status": 429, "retry_after": 7}, "upstream_error", True, False),
        ({"status": 400}, "upstream_rejected", False, False),
        ({"status": 404}, "upstream_rejected", False, False),
        ({"api_key": "another-key"}, "upstream_rejected", False, True),
    ],
)
def test_errors_are_classified_once_for_every_provider(provider, knobs, code, retryable, auth):
    name, fake = provider
    fake.configure(**knobs)
    with pytest.raises(UpstreamError) as raised:
        run_async(relay(name, fake).complete(request()))
    error = raised.value
    assert (error.code, error.retryable, error.auth_failure) == (code, retryable, auth)
    if "retry_after" in knobs:
        assert error.retry_after == 7
    assert "sk-upstream" not in error.message


def test_anthropic_overloaded_529_is_retryable():
    with FakeAnthropic(status=529) as fake:
        with pytest.raises(UpstreamError) as raised:
            run_async(relay("anthropic", fake).complete(request()))
        assert raised.value.retryable and raised.value.http_status == 529


def test_a_stream_error_event_or_cut_raises_retryable(provider):
    name, fake = provider
    for knobs in ({"error_after": 2}, {"cut_after": 2}):
        fake.configure(**knobs)
        with pytest.raises(UpstreamError) as raised:
            collect(name, fake, request())
        assert raised.value.retryable
        fake.reset()
        fake.configure(api_key="sk-upstream")


def test_timeouts_are_upstream_timeout(provider):
    name, fake = provider
    fake.configure(hang=True)
    slow = RELAYS[name](http_client(), Upstream(base_url=fake.base_url, api_key="sk-upstream", timeout=0.3))
    with pytest.raises(UpstreamError) as raised:
        run_async(slow.complete(request()))
    assert raised.value.code == "upstream_timeout" and raised.value.retryable
