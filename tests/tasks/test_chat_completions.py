"""POST /v1/chat/completions with the official openai SDK, unchanged, against the running stack: each
request a task (X-Task-Id), charged as its usage says, whichever provider's channel serves it."""

import json
from decimal import Decimal

import httpx
import jsonschema
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tasks.models import Task
from tasks.services import price_set
from tests.helpers import anthropic_and_gemini_channels, poll_until_finished

pytestmark = pytest.mark.e2e

# model name -> the provider whose channel serves it
MODELS = {"fake-model": "openai", "claude-sonnet-4": "anthropic", "gemini-2.5-flash": "gemini"}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The forecast", "parameters": WEATHER},
    }
]
ASK = {"role": "user", "content": "What is the weather in Oslo?"}


@pytest.fixture
def sdk(stack, stack_api):
    """The openai SDK on the stack, with channels of all three providers (fake-model on the stack's
    OpenAI-compatible fake, as stack_api set it up)."""
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    with (
        anthropic_and_gemini_channels(output_per_million=Decimal(2)),
        openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=secret, max_retries=0) as client,
    ):
        client.api = stack_api
        yield client


def charged_as_its_usage_says(sdk, task_id: str, usage) -> None:
    """The task behind an answer: completed, from this dialect, charged input at 1 and output at 2
    credits per million tokens, as the answer's usage counts them."""
    task = sdk.api.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "completed", task
    expected = (Decimal(usage.prompt_tokens) + 2 * Decimal(usage.completion_tokens)) / 1_000_000
    assert Decimal(task["usage"]["credits_charged"]) == expected
    assert Task.objects.get(pk=task_id).dialect == "openai"


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_a_chat_completion_and_charges_its_usage(sdk, model):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        max_completion_tokens=50,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], completion.usage)


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_delivers_the_text_and_usage_only_when_asked(sdk, model):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "stream this to me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream this to me"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], usage)

    quiet = list(
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert quiet and all(chunk.usage is None for chunk in quiet)
    assert "".join(c.choices[0].delta.content or "" for c in quiet if c.choices) == "Echo: x"


def test_a_failed_completion_is_an_openai_error(stack, sdk):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"status": 400})
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 502
    assert refused.value.body["code"] == "upstream_rejected"
    assert refused.value.response.headers["X-Task-Id"].startswith("task-llmrouter-")

    stream = sdk.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert failed.value.body["code"] == "upstream_rejected"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice.function.name",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"metadata": {f"k{i}": "v" for i in range(9)}}, "metadata"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_before_any_hold(sdk, extra, param):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}], **extra)
    assert refused.value.body["param"] == param
    assert not Task.objects.exists()


def test_the_key_and_its_model_rules_apply_as_on_generations(stack, sdk):
    stranger = openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key="sk-wrong", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["code"] == "model_not_found"


def test_media_in_a_message_other_than_the_users_is_refused_before_the_upstream(sdk):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "look"}, {"role": "assistant", "content": [image]}],
        )
    assert refused.value.body["param"] == "messages[1].content[0].type"
    assert not Task.objects.exists()


def test_the_admin_shows_which_dialect_each_task_came_through(sdk, admin_client):
    chat = sdk.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "x"}]
    )
    generation = sdk.api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": "y", "sync": True}
    )
    page = admin_client.get(f"/admin/tasks/task/{chat.headers['X-Task-Id']}/change/").content.decode()
    assert "OpenAI chat completions" in page
    listing = admin_client.get("/admin/tasks/task/").content.decode()
    assert listing.count("OpenAI chat completions") == 1 and listing.count("FoxAPI task") == 1
    assert generation.headers["X-Task-Id"] in listing


@pytest.mark.parametrize("model", MODELS)
def test_a_forced_tool_call_then_its_result_then_the_answer(sdk, model):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[ASK],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    called = raw.parse()
    assert called.choices[0].finish_reason == "tool_calls"
    (call,) = called.choices[0].message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], called.usage)

    answer = {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[ASK, called.choices[0].message, answer], tools=TOOLS
    )
    final = raw.parse()
    assert final.choices[0].message.content == "Tool said: sunny, 21 degrees"
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], final.usage)


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_call_deltas_add_up_to_the_call(sdk, model):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[ASK],
        tools=TOOLS,
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    deltas = [d for c in chunks for choice in c.choices for d in choice.delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert {delta.index for delta in deltas} == {0}
    arguments = "".join(delta.function.arguments or "" for delta in deltas)
    jsonschema.validate(json.loads(arguments), WEATHER)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], chunks[-1].usage)

    # The SDK's own stream helper assembles the same call.
    with sdk.chat.completions.stream(
        model=model, messages=[ASK], tools=TOOLS, tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


class Forecast(BaseModel):
    city: str
    days: int
    sunny: bool


@pytest.mark.parametrize("model", MODELS)
def test_parse_fills_a_pydantic_response_format(sdk, model):
    raw = sdk.chat.completions.with_raw_response.parse(model=model, messages=[ASK], response_format=Forecast)
    completion = raw.parse()
    assert isinstance(completion.choices[0].message.parsed, Forecast)
    charged_as_its_usage_says(sdk, raw.headers["X-Task-Id"], completion.usage)


def test_a_model_without_tools_is_refused_tools_before_any_hold(sdk):
    price_set(
        model_name="text-only",
        input_per_million=Decimal(1),
        output_per_million=Decimal(1),
        capabilities=["text"],
    )
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(model="text-only", messages=[ASK], tools=TOOLS)
    assert (refused.value.body["code"], refused.value.body["param"]) == ("model_rule_violation", "tools")
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(
            model="text-only", messages=[ASK], response_format={"type": "json_object"}
        )
    assert refused.value.body["param"] == "response_format"
    assert not Task.objects.exists()


@tool
def get_weather(city: str) -> str:
    """The forecast for a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("model", MODELS)
def test_langchain_chat_openai_completes_a_tool_calling_round_trip(stack, sdk, model):
    chat = ChatOpenAI(model=model, base_url=f"{stack.web_url}/v1", api_key=sdk.api_key, max_retries=0)
    question = HumanMessage("What is the weather in Oslo?")
    called = chat.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    (call,) = called.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    result = get_weather.invoke(call)  # LangChain runs the tool: a ToolMessage answering the call
    final = chat.bind_tools([get_weather]).invoke([question, called, result])
    assert final.content == f"Tool said: sunny in {call['args']['city']}"
    assert not final.tool_calls
    assert Task.objects.filter(dialect="openai", status="completed").count() == 2


def test_claudes_thinking_blocks_go_back_with_its_message_in_openai_format(sdk):
    """FoxAPI's `reasoning: true` on Claude with tools: the answer carries Claude's signed thinking_blocks
    beside reasoning_content, and the message sent back as it came carries the tool loop (Claude refuses
    the tool result without them)."""
    ask = {"role": "user", "content": "What does get_weather say for Oslo?"}
    asked = {"model": "claude-sonnet-4", "max_tokens": 4000, "reasoning": True, "tools": TOOLS, "sync": True}
    called = sdk.api.post("/v1/llm/generations", json={**asked, "messages": [ask]}).json()
    message = called["choices"][0]["message"]
    (block,) = message["thinking_blocks"]
    assert block["thinking"] == message["reasoning_content"] and block["signature"]
    result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "sunny"}

    final = sdk.api.post("/v1/llm/generations", json={**asked, "messages": [ask, message, result]})
    assert final.status_code == 200, final.text
    assert final.json()["choices"][0]["message"]["content"] == "Tool said: sunny"


def test_logprobs_come_back_from_an_openai_compatible_channel_plain_and_streamed(sdk):
    asked = {"model": "fake-model", "messages": [ASK], "logprobs": True, "top_logprobs": 2}
    choice = sdk.chat.completions.create(**asked).choices[0]
    tokens = choice.logprobs.content
    assert "".join(token.token for token in tokens) == choice.message.content
    assert all(
        len(token.top_logprobs) == 2 and token.top_logprobs[0].token == token.token for token in tokens
    )

    raw = sdk.chat.completions.with_raw_response.create(**asked, stream=True)
    chunks = [chunk for chunk in raw.parse() if chunk.choices and chunk.choices[0].logprobs]
    streamed = [token for chunk in chunks for token in chunk.choices[0].logprobs.content]
    assert [token.model_dump() for token in streamed] == [token.model_dump() for token in tokens]
    # the task's result, assembled from the stream, keeps them
    (result,) = poll_until_finished(sdk.api, raw.headers["X-Task-Id"])["results"]
    assert result["choices"][0]["logprobs"]["content"] == [token.model_dump() for token in tokens]


@pytest.mark.parametrize("model", ["claude-sonnet-4", "gemini-2.5-flash"])
def test_logprobs_are_refused_before_any_hold_for_models_whose_providers_return_none(sdk, model):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(model=model, messages=[ASK], logprobs=True)
    assert (refused.value.body["param"], refused.value.body["code"]) == ("logprobs", "model_rule_violation")
    assert not Task.objects.exists()
    assert sdk.chat.completions.create(model=model, messages=[ASK], logprobs=False).choices[0].message.content
