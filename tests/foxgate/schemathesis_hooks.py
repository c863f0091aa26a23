"""Schemathesis hooks for tests/foxgate/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

A body generated to be valid is made valid where a schema cannot say what valid is; a body generated to
be invalid keeps whatever schemathesis made:
- the model catalog lives in the database: a schema-valid request naming a model that does not exist is
  rightly refused (422 model_not_found), so the body names the model the test set up (its embedding
  model for embeddings);
- a tool call's id must be answered by a tool message, a named tool_choice must name a tool, a tool's
  parameters must be a valid JSON Schema: rules across values, so generated conversations lose their
  tool exchanges, tools get distinct names and an open parameters schema, and tool_choice names the first;
- OpenAPI 3.0 cannot bound an object's keys: metadata keys get the 1 to 64 characters the API takes;
- nor compare two values: a thinking budget must be below max_tokens, so max_tokens is raised past it;
- an Idempotency-Key names one request: each case gets a key of its own;
- a callback_url must be HTTPS to a public address, which no pattern says: it becomes one.
"""

import uuid
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

MODEL = "fake-model"
EMBEDDING_MODEL = "fake-embedding"  # tests/helpers.py embedding_model
OPEN_SCHEMA = {"type": "object"}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    body = case.body
    if (
        case.operation.path.endswith(("/llm/generations", "/chat/completions", "/messages", "/embeddings"))
        and isinstance(body, dict)
        and isinstance(body.get("model"), str)
        and not case.meta.is_negative_at(ParameterLocation.BODY)
    ):
        path = case.operation.path
        body["model"] = EMBEDDING_MODEL if path.endswith("/embeddings") else MODEL
        if "callback_url" in body:
            body["callback_url"] = "https://hooks.example.com/done"
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = uuid.uuid4().hex  # a key reused with another body is a 422
        if path.endswith("/messages"):
            _anthropic_tools_made_consistent(body)
        elif not path.endswith("/embeddings"):
            _openai_tools_made_consistent(body)
    return case


def _openai_tools_made_consistent(body: dict[str, Any]) -> None:
    if isinstance(body.get("metadata"), dict):
        body["metadata"] = {f"tag{index}": value for index, value in enumerate(body["metadata"].values())}
    if isinstance(body.get("messages"), list):
        messages = [m for m in body["messages"] if m.get("role") != "tool"]
        for message in messages:
            if message.pop("tool_calls", None) is not None and message.get("content") is None:
                message["content"] = "calls nothing now"
        body["messages"] = messages or [{"role": "user", "content": "no tools now"}]
    for index, tool in enumerate(body.get("tools") or []):
        tool["function"]["name"] = f"tool_{index}"
        if "parameters" in tool["function"]:
            tool["function"]["parameters"] = OPEN_SCHEMA
    if isinstance(body.get("tool_choice"), dict):
        body["tool_choice"]["function"]["name"] = "tool_0"
    json_schema = (body.get("response_format") or {}).get("json_schema")
    if json_schema and "schema" in json_schema:
        json_schema["schema"] = OPEN_SCHEMA


def _anthropic_tools_made_consistent(body: dict[str, Any]) -> None:
    if isinstance(body.get("messages"), list):
        for message in body["messages"]:
            if isinstance(message.get("content"), list):
                kept = [b for b in message["content"] if b.get("type") not in ("tool_use", "tool_result")]
                message["content"] = kept or "no tools now"
    for index, tool in enumerate(body.get("tools") or []):
        tool["name"] = f"tool_{index}"
        tool["input_schema"] = OPEN_SCHEMA
    if (body.get("tool_choice") or {}).get("type") == "tool":
        body["tool_choice"]["name"] = "tool_0"
    budget = (body.get("thinking") or {}).get("budget_tokens")
    if isinstance(budget, int) and isinstance(body.get("max_tokens"), int):
        body["max_tokens"] = max(body["max_tokens"], budget + 1)
