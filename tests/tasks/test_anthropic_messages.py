"""POST /v1/messages with the official anthropic SDK, unchanged, against the running stack: each request a
task (X-Task-Id), charged as its usage says, whichever provider's channel serves it."""

import json
from decimal import ROUND_HALF_UP, Decimal

import anthropic
import httpx
import jsonschema
import openai
import pytest

from tasks.models import Task
from tasks.services import price_set
from tests.helpers import anthropic_and_gemini_channels, run_command, upstream_requests

pytestmark = pytest.mark.e2e

MODELS = ("fake-model", "claude-sonnet-4", "gemini-2.5-flash")  # OpenAI-compatible, Anthropic, Gemini
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
}
TOOLS = [{"name": "get_weather", "description": "The forecast", "input_schema": WEATHER}]
ASK = {"role": "user", "content": "What is the weather in Oslo?"}
THINKING = {"type": "enabled", "budget_tokens": 1024}
SIGNED_THOUGHT = {"type": "thinking", "thinking": "Oslo is a city.", "signature": "c2lnbmVk"}


@pytest.fixture
def sdk(stack, stack_api):
    """The anthropic SDK on the stack (its key as x-api-key, as the SDK sends it), with channels of all
    three providers."""
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    with (
        anthropic_and_gemini_channels(output_per_million=Decimal(2)) as (fake_anthropic, fake_gemini),
        anthropic.Anthropic(base_url=stack.web_url, api_key=secret, max_retries=0) as client,
    ):
        client.api, client.secret = stack_api, secret
        client.fake_anthropic, client.fake_gemini = fake_anthropic, fake_gemini
        yield client


def charged_as_its_usage_says(sdk, task_id: str, usage) -> None:
    task = sdk.api.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "completed", task
    input_tokens = (
        usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    )
    expected = (Decimal(input_tokens) + 2 * Decimal(usage.output_tokens)) / 1_000_000
    assert Decimal(task["usage"]["credits_charged"]) == expected
    assert Task.objects.get(pk=task_id).dialect == "anthropic"


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_a_message_and_charges_its_usage(sdk, model):
    raw = sdk.messages.with_raw_response.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}],
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], message.usage)


@pytest.mark.parametrize("model", MODELS)
def test_the_stream_helper_delivers_the_text_and_the_final_usage(sdk, model):
    with sdk.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream this to me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream this to me"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    task_id = stream.response.headers["X-Task-Id"]
    charged_as_its_usage_says(sdk, task_id, final.usage)


def test_blocks_system_and_stop_sequences_reach_the_upstream_as_openai_messages(stack, sdk):
    sdk.messages.create(
        model="fake-model",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ],
    )
    sent = upstream_requests(stack)[-1]["body"]
    assert sent["messages"] == [
        # a system block marking a cache breakpoint stays a block; an OpenAI upstream gets it without the mark
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Sure?"},
    ]
    assert sent["stop"] == ["END"] and sent["max_tokens"] == 50


def test_a_bearer_key_works_too_and_a_wrong_key_is_anthropics_authentication_error(stack, sdk):
    bearer = anthropic.Anthropic(base_url=stack.web_url, auth_token=sdk.secret, max_retries=0)
    with bearer:
        message = bearer.messages.create(
            model="fake-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert message.content[0].text == "Echo: x"
    stranger = anthropic.Anthropic(base_url=stack.web_url, api_key="sk-wrong", max_retries=0)
    with stranger, pytest.raises(anthropic.AuthenticationError) as refused:
        stranger.messages.create(
            model="fake-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "tools": []}, "tools"),
        (
            {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5},
            "temperature",
        ),
        (
            {"max_tokens": 2000, "messages": [ASK], "thinking": {"type": "enabled", "budget_tokens": 1000}},
            "thinking.budget_tokens",
        ),
        (
            {"max_tokens": 2000, "messages": [ASK], "thinking": {"type": "enabled", "budget_tokens": 2000}},
            "thinking.budget_tokens",
        ),
        ({"max_tokens": 2000, "messages": [ASK], "thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        (
            {"max_tokens": 10, "messages": [{"role": "user", "content": [SIGNED_THOUGHT]}]},
            "messages[0].content",
        ),
        (
            {
                "max_tokens": 10,
                "messages": [
                    ASK,
                    {"role": "assistant", "content": [{"type": "thinking", "thinking": "Hmm."}]},
                    ASK,
                ],
            },
            "messages[1].content[0].signature",
        ),
    ],
)
def test_bad_input_is_anthropics_invalid_request_error_naming_the_field(stack, sdk, body, named):
    response = httpx.post(
        f"{stack.web_url}/v1/messages",
        json={"model": "fake-model", **body},
        headers={"x-api-key": sdk.secret, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 422
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{named}:")
    assert not Task.objects.exists()


def test_a_failed_message_is_anthropics_api_error(stack, sdk):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"status": 400})
    with pytest.raises(anthropic.APIStatusError) as refused:
        sdk.messages.create(model="fake-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 502
    assert refused.value.body["error"]["type"] == "api_error"
    assert refused.value.response.headers["X-Task-Id"].startswith("task-llmrouter-")

    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        sdk.messages.stream(
            model="fake-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        list(stream.text_stream)
    assert failed.value.body["error"]["type"] == "api_error"


def test_the_books_balance_after_requests_of_every_dialect_and_provider(stack, sdk):
    """Charges, holds and releases of both SDK dialects and FoxAPI's, served and failed, streamed or
    not, through all three providers: billing_audit finds every ledger line where it should be."""
    chat = openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=sdk.secret, max_retries=0)
    with chat:
        for model in MODELS:
            sdk.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": "a"}])
            with sdk.messages.stream(
                model=model, max_tokens=20, messages=[{"role": "user", "content": "b"}]
            ) as s:
                s.get_final_message()
            chat.chat.completions.create(model=model, messages=[{"role": "user", "content": "c"}])
            list(
                chat.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "d"}], stream=True
                )
            )
        httpx.post(f"{stack.fake_url}/_fake/config", json={"status": 400})
        with pytest.raises(openai.APIStatusError):
            chat.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "e"}])
    assert Task.objects.filter(status=Task.Status.COMPLETED).count() == 12
    assert "books balance" in run_command("billing_audit")  # exits 0


@pytest.mark.parametrize("model", MODELS)
def test_tools_a_forced_tool_use_then_its_result_then_the_answer(sdk, model):
    raw = sdk.messages.with_raw_response.create(
        model=model,
        max_tokens=200,
        messages=[ASK],
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    called = raw.parse()
    assert called.stop_reason == "tool_use"
    (use,) = [block for block in called.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.id
    jsonschema.validate(use.input, WEATHER)
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], called.usage)

    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
    raw = sdk.messages.with_raw_response.create(
        model=model,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            ASK,
            {"role": "assistant", "content": called.content},
            {"role": "user", "content": [result]},
        ],
    )
    final = raw.parse()
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == "Tool said: sunny" and final.stop_reason == "end_turn"
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], final.usage)


@pytest.mark.parametrize("model", MODELS)
def test_the_stream_helper_assembles_a_tool_use_from_its_json_deltas(sdk, model):
    with sdk.messages.stream(
        model=model, max_tokens=200, messages=[ASK], tools=TOOLS, tool_choice={"type": "any"}
    ) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    assert "input_json" in events  # the SDK's event for each input_json_delta
    (use,) = [block for block in message.content if block.type == "tool_use"]
    assert use.name == "get_weather"
    jsonschema.validate(use.input, WEATHER)
    assert message.stop_reason == "tool_use"


def test_tools_reach_each_channel_in_its_own_format(stack, sdk):
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    sdk.messages.create(
        model="claude-sonnet-4", max_tokens=200, messages=[ASK], tools=TOOLS, tool_choice=choice
    )
    sent = sdk.fake_anthropic.requests[-1]["body"]
    assert (sent["tools"], sent["tool_choice"]) == (TOOLS, choice)

    sdk.messages.create(model="fake-model", max_tokens=200, messages=[ASK], tools=TOOLS, tool_choice=choice)
    sent = upstream_requests(stack)[-1]["body"]
    function = {"name": "get_weather", "description": "The forecast", "parameters": WEATHER}
    assert sent["tools"] == [{"type": "function", "function": function}]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("auto", False)


def test_cache_control_reaches_anthropic_and_cache_reads_and_writes_are_priced_apart(stack, sdk):
    price_set(
        model_name="claude-sonnet-4",
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
        cached_input_per_million=Decimal("0.1"),
        cache_write_per_million=Decimal("1.25"),
        cache_write_1h_per_million=Decimal(2),
    )
    system = [
        {
            "type": "text",
            "text": "You answer questions about the weather. " * 20,
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    question = {"role": "user", "content": [{"type": "text", "text": "Oslo?"}]}
    for attempt in range(2):
        raw = sdk.messages.with_raw_response.create(
            model="claude-sonnet-4", max_tokens=100, system=system, messages=[question]
        )
        usage = raw.parse().usage
        task = sdk.api.get(f"/v1/tasks/{raw.headers['X-Task-Id']}").json()
        if attempt == 0:
            written, written_1h = (
                usage.cache_creation_input_tokens,
                usage.cache_creation.ephemeral_1h_input_tokens,
            )
            assert written > written_1h > 0 and usage.cache_read_input_tokens == 0
            expected = usage.input_tokens + (written - written_1h) * Decimal("1.25") + written_1h * 2
        else:
            assert usage.cache_read_input_tokens == written and usage.cache_creation_input_tokens == 0
            expected = usage.input_tokens + written * Decimal("0.1")
        expected = (expected + 2 * usage.output_tokens) / 1_000_000
        # the ledger keeps 6 decimals, rounding half up once (tenants/services.py credits_settle)
        assert Decimal(task["usage"]["credits_charged"]) == expected.quantize(
            Decimal("0.000001"), ROUND_HALF_UP
        )
    assert sdk.fake_anthropic.requests[-1]["body"]["system"] == system

    # An OpenAI-compatible upstream caches by itself: the breakpoints do not reach it.
    sdk.messages.create(model="fake-model", max_tokens=100, system=system, messages=[question])
    sent = upstream_requests(stack)[-1]["body"]["messages"]
    assert "cache_control" not in json.dumps(sent)
    assert "books balance" in run_command("billing_audit")  # exits 0


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_thinking_reaches_claude_as_sent_and_its_signed_blocks_carry_the_tool_loop(sdk, streamed):
    """Claude Code's loop with extended thinking: Claude refuses the tool result unless the turn of calls
    it answers starts with the thinking block it signed (the fake as the real API does)."""
    ask = {"role": "user", "content": "What does get_weather say for Oslo?"}
    asked = {"model": "claude-sonnet-4", "max_tokens": 2000, "thinking": THINKING, "tools": TOOLS}
    if streamed:
        with sdk.messages.stream(**asked, messages=[ask]) as stream:
            events = {event.type for event in stream}
            called = stream.get_final_message()
        assert {"thinking", "signature", "input_json"} <= events
    else:
        called = sdk.messages.create(**asked, messages=[ask])
    thought, use = called.content
    assert thought.type == "thinking" and thought.thinking.startswith("Thinking about:") and thought.signature
    assert use.type == "tool_use" and called.stop_reason == "tool_use"
    assert sdk.fake_anthropic.requests[-1]["body"]["thinking"] == THINKING

    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}
    raw = sdk.messages.with_raw_response.create(
        **asked, messages=[ask, {"role": "assistant", "content": called.content}, result]
    )
    final = raw.parse()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[1].text == "Tool said: sunny"
    assert sdk.fake_anthropic.requests[-1]["body"]["messages"][1]["content"][0] == thought.model_dump()
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], final.usage)


@pytest.mark.parametrize("model", ["fake-model", "gemini-2.5-flash"])
def test_thinking_is_translated_for_other_channels_and_claudes_blocks_stay_away(stack, sdk, model):
    answer = sdk.messages.create(
        model=model,
        max_tokens=2000,
        thinking=THINKING,
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [SIGNED_THOUGHT, {"type": "text", "text": "Hello."}]},
            {"role": "user", "content": "Again"},
        ],
    )
    assert answer.content[-1].text == "Echo: Again"
    sent = (
        upstream_requests(stack)[-1]["body"]
        if model == "fake-model"
        else sdk.fake_gemini.requests[-1]["body"]
    )
    assert "Oslo is a city" not in json.dumps(sent)
    if model == "fake-model":
        assert sent["reasoning_effort"] == "medium"
    else:
        assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024
