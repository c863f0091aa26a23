"""The OpenAPI schema states what the API answers and what it refuses, so a schema-valid client is not
surprised: every status an operation can send, the protocol rules of a submit, the stream's events."""

import pytest
from jsonschema import Draft4Validator
from openapi_spec_validator import validate
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec() -> dict:
    spec = APIClient().get("/v1/openapi.json").json()
    validate(spec)
    return spec


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_documents_the_failures_any_call_can_meet(spec):
    for name, operation in operations(spec):
        assert {"400", "401", "403", "413", "500", "503"} <= set(operation["responses"]), name
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert set(response["content"]) == {"application/json"}, (name, status)  # never a stream
                schema = response["content"]["application/json"]["schema"]
                envelope = "AnthropicErrorSchema" if name == "POST /v1/messages" else "ErrorSchema"
                assert schema == {"$ref": f"#/components/schemas/{envelope}"}, (name, status)


def test_a_submit_answers_a_task_a_completion_or_an_event_stream(spec):
    ok = spec["paths"]["/v1/llm/generations"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/GenerationResult"}
    shapes = spec["components"]["schemas"]["GenerationResult"]["oneOf"]
    assert {shape["$ref"].rsplit("/", 1)[1] for shape in shapes} == {"TaskSchema", "ChatCompletionSchema"}
    assert ok["text/event-stream"]["schema"] == ok_stream(spec)


def ok_stream(spec: dict) -> dict:
    stream = spec["paths"]["/v1/llm/generations/{task_id}/stream"]["get"]["responses"]["200"]["content"]
    return stream["text/event-stream"]["schema"]


def test_the_stream_is_documented_as_events_not_as_a_json_string(spec):
    ok = spec["paths"]["/v1/llm/generations/{task_id}/stream"]["get"]["responses"]["200"]["content"]
    assert set(ok) == {"text/event-stream"}
    events = ok["text/event-stream"]["schema"]["oneOf"]
    assert [event["title"] for event in events] == ["chunk", "done", "error"]
    assert events[0]["required"] == ["event", "data", "id"]
    done = events[1]["properties"]["data"]
    assert done["x-json"]["required"] == ["total_chunks"]


def request_validator(spec: dict) -> Draft4Validator:
    schema = dict(spec["components"]["schemas"]["GenerationRequestRequest"])
    schema["components"] = spec["components"]
    return Draft4Validator(schema)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"model": "m", "prompt": "hi"}, True),
        ({"model": "m"}, False),  # no prompt and no messages: the API answers 422
        ({"model": "m", "image_urls": ["https://a.example/cat.png"]}, False),
        ({"model": "m", "prompt": "look", "image_urls": ["https://a.example/cat.png"]}, True),
        ({"model": "m", "audio_url": "https://a.example/a.mp3"}, True),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, True),
        ({"model": "m", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, False),
        ({"model": "m", "prompt": "hi", "top_p": 0.5}, False),
        ({"model": "m", "prompt": "hi", "tools": []}, False),  # unknown fields are refused
        ({"model": "m", "prompt": "look", "image_urls": ["ftp://a.example/cat.png"]}, False),
        ({"model": "m", "prompt": "look", "image_urls": ["data:image/png;base64,iVBORw0K"]}, True),
        (
            {"model": "m", "prompt": "look", "image_urls": ["data:image/png;base64,iVBORw0K"], "sync": True},
            False,
        ),
        ({"model": "m", "prompt": "watch", "video_urls": ["https://a.example/page.html"]}, False),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, False),
    ],
)
def test_the_request_schema_states_which_fields_each_protocol_needs(spec, body, valid):
    assert request_validator(spec).is_valid(body) is valid


def test_a_format_query_parameter_is_not_a_404(api):
    assert api.get("/v1/models?format=AAA").status_code == 200
