"""sync: true over real HTTP: the POST answers the ChatCompletion itself."""

import socket
import time

import httpx
import pytest
from openai.types.chat import ChatCompletion

from tasks.models import Task
from tests.helpers import poll_until_finished

pytestmark = pytest.mark.e2e


def test_sync_returns_the_bare_chat_completion_with_the_task_id(stack, stack_api):
    response = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": "now", "sync": True}
    )
    assert response.status_code == 200
    completion = ChatCompletion.model_validate(response.json())
    assert completion.choices[0].message.content == "Echo: now"
    task = stack_api.get(f"/v1/tasks/{response.headers['X-Task-Id']}").json()
    assert task["status"] == "completed" and task["results"][0] == response.json()


def test_sync_answer_is_byte_for_byte_the_result_the_task_shows(stack, stack_api):
    """The answer comes from the settlement's notification; it must read exactly as GET /v1/tasks/{id}
    shows the stored result (the same keys in the same order, the same characters)."""
    response = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": 'héllo ✓ "quoted"', "sync": True}
    )
    assert response.status_code == 200
    shown = stack_api.get(f"/v1/tasks/{response.headers['X-Task-Id']}").content
    assert b'"results":[' + response.content + b"]" in shown


def test_sync_answers_as_soon_as_the_task_finishes(stack, stack_api):
    """Woken by the task's notification, not by a slow re-read: well under the 5 s safety interval."""
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.0})
    started = time.monotonic()
    response = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": "x", "sync": True}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 3.5, f"sync answer took {elapsed:.2f}s for a 1 s upstream"


@pytest.mark.parametrize(
    ("knobs", "status", "code"),
    [
        ({"status": 500}, 503, "all_platforms_exhausted"),
        ({"status": 400}, 502, "upstream_rejected"),
    ],
)
def test_sync_failure_answers_the_tasks_error(stack, stack_api, knobs, status, code):
    httpx.post(f"{stack.fake_url}/_fake/config", json=knobs)
    response = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": "x", "sync": True}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == (
        "service_unavailable_error" if status == 503 else "upstream_error"
    )
    task = stack_api.get(f"/v1/tasks/{response.headers['X-Task-Id']}").json()
    assert task["status"] == "failed" and task["error"]["code"] == code


def test_sync_client_that_disconnects_still_finds_its_task_completed(stack, stack_api):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.5})
    body = b'{"model": "fake-model", "prompt": "bye", "sync": true}'
    secret = stack_api.headers["Authorization"]
    with socket.create_connection(("127.0.0.1", stack.web_port)) as raw:
        raw.sendall(
            b"POST /v1/llm/generations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Authorization: {secret}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.5)  # submitted, waiting on the slow upstream; now hang up
    # The task id never reached us; find it among the tenant's tasks.
    deadline = time.monotonic() + 10
    task_ids: list[str] = []
    while not task_ids and time.monotonic() < deadline:
        task_ids = list(Task.objects.filter(sync=True).values_list("id", flat=True))
        time.sleep(0.05)
    (task_id,) = task_ids
    task = poll_until_finished(stack_api, task_id)
    assert task["status"] == "completed"
    assert task["results"][0]["choices"][0]["message"]["content"] == "Echo: bye"
