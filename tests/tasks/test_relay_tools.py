"""Golden tests for tools and structured output in each adapter, both ways: the exact upstream request
built from OpenAI's tools, tool_choice, tool calls, tool messages and response_format, and what the
adapter makes of each provider's answers (served by the fakes over real HTTP), plain and streamed."""

import json

import httpx
import jsonschema
import pytest
from openai.types.chat import ChatCompletion

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.gemini import FakeGemini
from foxgate.fakes.openai import FakeOpenAI
from tasks.relay.calls import StreamAssembly
from tasks.relay.providers import RELAYS, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.relay.providers.gemini import _tool_call

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The forecast", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_time"}},
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
FAKES = {"openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}


def body(provider: str, request: UpstreamRequest) -> dict:
    relay = RELAYS[provider](
        httpx.AsyncClient(), Upstream(base_url="http://upstream", api_key="k", timeout=5)
    )
    return relay.body(request, stream=False) if provider != "gemini" else relay.body(request)


def test_openai_gets_the_tools_and_the_conversation_as_sent():
    extra = {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, "seed": 7}
    sent = body("openai", UpstreamRequest(model="m", messages=CONVERSATION, extra=extra))
    assert sent == {"model": "m", "messages": CONVERSATION, **extra}


def test_anthropic_tools_tool_use_and_tool_result_blocks():
    extra = {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    sent = body(
        "anthropic", UpstreamRequest(model="claude", messages=CONVERSATION, max_tokens=100, extra=extra)
    )
    assert sent == {
        "model": "claude",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "The forecast", "input_schema": WEATHER},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_anthropic_tool_choice(choice, parallel, expected):
    extra = {"tools": TOOLS} | ({"tool_choice": choice} if choice else {})
    extra |= {} if parallel is None else {"parallel_tool_calls": parallel}
    sent = body("anthropic", UpstreamRequest(model="c", messages=CONVERSATION[:2], extra=extra))
    assert sent["tool_choice"] == expected


def test_anthropic_structured_output_is_its_output_format():
    schema_format = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": WEATHER}}
    sent = body(
        "anthropic",
        UpstreamRequest(model="c", messages=CONVERSATION[:2], extra={"response_format": schema_format}),
    )
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": WEATHER}}
    sent = body(
        "anthropic",
        UpstreamRequest(
            model="c", messages=CONVERSATION[:2], extra={"response_format": {"type": "json_object"}}
        ),
    )
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}


def test_gemini_function_declarations_calls_and_responses():
    second = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
    conversation = [
        *CONVERSATION[:2],
        {"role": "assistant", "content": None, "tool_calls": [CALL, second]},
        CONVERSATION[3],
        {"role": "tool", "tool_call_id": "call_2", "content": '{"hour": 9}'},
    ]
    extra = {"tools": TOOLS, "tool_choice": "required", "seed": 7, "frequency_penalty": 0.5}
    sent = body("gemini", UpstreamRequest(model="gemini", messages=conversation, extra=extra))
    assert sent == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Oslo?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                    {"functionResponse": {"name": "get_time", "response": {"hour": 9}}},
                ],
            },
        ],
        "generationConfig": {"seed": 7, "frequencyPenalty": 0.5},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "description": "The forecast", "parametersJsonSchema": WEATHER},
                    {"name": "get_time"},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
    ],
)
def test_gemini_tool_choice(choice, config):
    sent = body(
        "gemini",
        UpstreamRequest(model="g", messages=CONVERSATION[:2], extra={"tools": TOOLS, "tool_choice": choice}),
    )
    assert sent["toolConfig"] == {"functionCallingConfig": config}


def test_gemini_structured_output_is_a_json_response_with_its_schema():
    schema_format = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": WEATHER}}
    sent = body(
        "gemini",
        UpstreamRequest(model="g", messages=CONVERSATION[:2], extra={"response_format": schema_format}),
    )
    assert sent["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": WEATHER}


def test_a_gemini_thought_signature_rides_in_the_call_id_and_goes_back():
    part = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"}
    made = _tool_call(part)
    assert made["id"].endswith("__ts__c2ln") and json.loads(made["function"]["arguments"]) == {"city": "Oslo"}
    conversation = [CONVERSATION[1], {"role": "assistant", "content": None, "tool_calls": [made]}]
    conversation.append({"role": "tool", "tool_call_id": made["id"], "content": "sunny"})
    sent = body("gemini", UpstreamRequest(model="g", messages=conversation))
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"


@pytest.fixture(params=list(FAKES))
def provider(request):
    with FAKES[request.param](api_key="sk-upstream") as fake:
        yield request.param, fake


def complete(provider, **extra) -> ChatCompletion:
    name, fake = provider
    relay = RELAYS[name](http_client(), Upstream(base_url=fake.base_url, api_key="sk-upstream", timeout=5))
    messages = extra.pop("messages", CONVERSATION[:2])
    request = UpstreamRequest(model="fake-model", messages=messages, default_max_tokens=1000, extra=extra)
    return ChatCompletion.model_validate(run_async(relay.complete(request)))


def streamed(provider, **extra) -> tuple[list[dict], ChatCompletion]:
    name, fake = provider
    relay = RELAYS[name](http_client(), Upstream(base_url=fake.base_url, api_key="sk-upstream", timeout=5))
    request = UpstreamRequest(
        model="fake-model", messages=CONVERSATION[:2], default_max_tokens=1000, extra=extra
    )

    async def gather():
        return [c async for c in relay.stream(request)]

    chunks = run_async(gather())
    assembly = StreamAssembly(started=0)
    for chunk in chunks:
        assembly.add(chunk)
    return chunks, ChatCompletion.model_validate(assembly.outcome(None).completion)


def test_a_forced_call_answers_with_arguments_that_fit_the_schema(provider):
    completion = complete(
        provider, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id and call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    assert completion.usage.completion_tokens > 0


def test_streamed_tool_call_deltas_add_up_to_the_call(provider):
    chunks, completion = streamed(provider, tools=TOOLS, tool_choice="required")
    deltas = [d for c in chunks for choice in c["choices"] for d in choice["delta"].get("tool_calls") or []]
    assert deltas and deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
    assert all(delta["index"] == 0 for delta in deltas)
    (call,) = completion.choices[0].message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.content is None


def test_the_tool_result_is_read_and_answered(provider):
    completion = complete(provider, tools=TOOLS, messages=CONVERSATION)
    assert completion.choices[0].message.content == "Tool said: sunny"
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls


def test_left_to_choose_the_model_calls_a_tool_the_user_names_and_none_otherwise(provider):
    asked = [{"role": "user", "content": "use get_time please"}]
    assert (
        complete(provider, tools=TOOLS, messages=asked).choices[0].message.tool_calls[0].function.name
        == "get_time"
    )
    assert (
        complete(provider, tools=TOOLS, tool_choice="none", messages=asked).choices[0].message.tool_calls
        is None
    )


def test_json_schema_answers_a_document_valid_for_the_schema(provider):
    schema_format = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": WEATHER}}
    completion = complete(provider, response_format=schema_format)
    jsonschema.validate(json.loads(completion.choices[0].message.content), WEATHER)
    assert isinstance(
        json.loads(complete(provider, response_format={"type": "json_object"}).choices[0].message.content),
        dict,
    )


SIGNED = {"type": "thinking", "thinking": "Oslo is a city.", "signature": "c2lnbmVk"}
REDACTED = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}
UNSIGNED = {"type": "thinking", "thinking": "Another provider's reasoning.", "signature": ""}
THOUGHTFUL = [
    CONVERSATION[1],
    {**CONVERSATION[2], "thinking_blocks": [SIGNED, UNSIGNED, REDACTED]},
    CONVERSATION[3],
]


def test_anthropic_gets_the_callers_thinking_and_the_signed_blocks_leading_the_turn():
    request = UpstreamRequest(
        model="claude", messages=THOUGHTFUL, max_tokens=2000, temperature=0.5, thinking={"type": "adaptive"}
    )
    sent = body("anthropic", request)
    assert sent["thinking"] == {"type": "adaptive"} and "temperature" not in sent
    assert sent["messages"][1]["content"] == [
        SIGNED,
        REDACTED,  # the unsigned block cannot go back to Claude: it would refuse it
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    disabled = body(
        "anthropic",
        UpstreamRequest(
            model="claude", messages=THOUGHTFUL[:1], temperature=0.5, thinking={"type": "disabled"}
        ),
    )
    assert disabled["thinking"] == {"type": "disabled"} and disabled["temperature"] == 0.5


def test_openai_and_gemini_get_no_thinking_blocks_and_gemini_the_budget():
    sent = body("openai", UpstreamRequest(model="m", messages=THOUGHTFUL))
    assert sent["messages"] == [CONVERSATION[1], CONVERSATION[2], CONVERSATION[3]]
    thinking = {"type": "enabled", "budget_tokens": 2048}
    sent = body("gemini", UpstreamRequest(model="g", messages=THOUGHTFUL, reasoning=True, thinking=thinking))
    assert "thinking" not in json.dumps(sent["contents"])
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}


def test_claudes_signed_thinking_comes_back_alike_plain_and_streamed_and_carries_the_tool_loop():
    """With thinking on, Claude refuses a tool result unless the turn of calls it answers starts with the
    thinking it signed (the fake as the real API): the blocks must survive the answer, the stream's
    assembly and the next request."""
    asked = [{"role": "user", "content": "What does get_weather say for Oslo?"}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with FakeAnthropic(api_key="sk-upstream") as fake:
        relay = RELAYS["anthropic"](
            http_client(), Upstream(base_url=fake.base_url, api_key="sk-upstream", timeout=5)
        )

        def request(messages):
            return UpstreamRequest(
                model="claude-sonnet-4",
                messages=messages,
                max_tokens=2000,
                reasoning=True,
                thinking=thinking,
                extra={"tools": TOOLS},
            )

        async def gather():
            return [c async for c in relay.stream(request(asked))]

        answer = run_async(relay.complete(request(asked)))["choices"][0]["message"]
        assembly = StreamAssembly(started=0)
        for chunk in run_async(gather()):
            assembly.add(chunk)
        streamed = assembly.outcome(None).completion["choices"][0]["message"]
        (block,) = answer["thinking_blocks"]
        assert block["thinking"] == answer["reasoning_content"] and block["signature"]
        assert streamed["thinking_blocks"] == answer["thinking_blocks"]
        assert answer["tool_calls"][0]["function"]["name"] == "get_weather"

        result = {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": "sunny"}
        final = run_async(relay.complete(request([*asked, answer, result])))
        assert final["choices"][0]["message"]["content"] == "Tool said: sunny"
        forgotten = {k: v for k, v in answer.items() if k != "thinking_blocks"}
        with pytest.raises(UpstreamError, match="must start with a thinking block"):
            run_async(relay.complete(request([*asked, forgotten, result])))
