"""POST /v1/tasks/{id}/cancel: a pending task is cancelled at once with its whole hold released; a
processing one has its upstream call stopped and is charged what was delivered; a finished one is 409."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.utils import timezone

from tasks.jobs import task_run
from tasks.models import Task
from tasks.relay.calls import StreamAssembly
from tasks.relay.reclaim import leases_reclaim
from tasks.services import estimate_input_tokens
from tenants.models import ApiKey, LedgerEntry, Tenant
from tests.helpers import run_command, upstream_requests
from tests.tenants.writes import admin_client

LONG_REPLY = " ".join(f"word{n}" for n in range(300))


def sse_events(response: httpx.Response):
    """(event, data) of each server-sent event of a streaming response, as they arrive."""
    event, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and event:
            yield event, json.loads(data)
            event, data = "", ""


def until(condition, timeout: float = 10):
    """Poll `condition` until it holds (its value), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "the condition did not come to hold"
        time.sleep(0.02)
    return value


def submit(api) -> str:
    return api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json").json()["id"]


def held(task: Task) -> tuple[Decimal, Decimal]:
    return Tenant.objects.get(pk=task.tenant_id).held, ApiKey.objects.get(pk=task.api_key_id).held


@pytest.mark.e2e
def test_a_stream_cancelled_mid_way_closes_the_upstream_and_is_charged_what_was_delivered(stack, stack_api):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"reply": LONG_REPLY, "chunk_interval": 0.05})
    submitted = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": "caption this", "stream": True}
    ).json()
    assert submitted["can_cancel"] is True
    received = StreamAssembly(started=0)
    events = []
    with stack_api.stream("GET", submitted["stream"]["url"]) as stream:
        for event, data in sse_events(stream):
            events.append(event)
            if event == "chunk":
                received.add(data)
            if event == "chunk" and events.count("chunk") == 5:
                cancelled = stack_api.post(f"/v1/tasks/{submitted['id']}/cancel")
                assert cancelled.status_code == 200, cancelled.json()
                answer = cancelled.json()
                assert (answer["status"], answer["error"]["code"], answer["can_cancel"]) == (
                    "cancelled",
                    "cancelled",
                    False,
                )
            if event == "error":
                assert data["code"] == "cancelled"
    assert events[-1] == "error" and 5 <= events.count("chunk") < 300

    assert len(upstream_requests(stack)) == 1
    until(lambda: upstream_requests(stack)[0]["client_closed"])  # the fake saw its connection closed
    task = Task.objects.get(pk=submitted["id"])
    assert task.status == "cancelled" and task.charge_basis == "delivered_estimate"
    input_tokens = estimate_input_tokens(task.request["messages"], None)
    assert task.credits_charged == task.price.cost(input_tokens=input_tokens, output_tokens=received.tokens)
    assert held(task) == (0, 0)
    assert "books balance" in run_command("billing_audit")
    assert stack_api.post(f"/v1/tasks/{task.id}/cancel").json()["error"]["code"] == "task_already_finished"


@pytest.mark.e2e
def test_a_sync_request_waiting_for_a_cancelled_task_is_answered(stack, stack_api):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"hang": True})
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    raised: list[Exception] = []

    def ask() -> None:
        with openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=secret, max_retries=0) as client:
            try:
                client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": "hi"}]
                )
            except openai.APIStatusError as error:
                raised.append(error)

    waiting = threading.Thread(target=ask)
    waiting.start()
    task = until(lambda: Task.objects.filter(status="processing").first())
    until(lambda: upstream_requests(stack))  # the call is in flight
    answer = stack_api.post(f"/v1/tasks/{task.id}/cancel")
    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
    waiting.join(timeout=30)
    (error,) = raised
    assert (error.status_code, error.code) == (409, "cancelled")
    until(lambda: upstream_requests(stack)[0]["client_closed"])
    task.refresh_from_db()
    assert (task.credits_charged, task.charge_basis) == (0, "nothing_delivered")
    assert held(task) == (0, 0)


@pytest.mark.django_db
def test_a_pending_task_is_cancelled_at_once_with_its_whole_hold_released(api, openai_channel, fake_openai):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json").json()[
        "id"
    ]
    task = Task.objects.get(pk=task_id)
    assert held(task) == (task.credits_reserved, task.credits_reserved) and task.credits_reserved > 0

    answer = api.post(f"/v1/tasks/{task_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled" and answer.json()["usage"]["credits_charged"] == "0"
    assert held(task) == (0, 0)
    lines = LedgerEntry.objects.filter(task_id=task_id)
    assert sorted(lines.values_list("kind", flat=True)) == ["hold", "release"]
    assert sum(line.held_change for line in lines) == 0 and sum(line.amount for line in lines) == 0

    task_run(task_id)  # its queued job comes round: the task stays cancelled, and nothing is called
    assert Task.objects.get(pk=task_id).status == "cancelled" and fake_openai.requests == []
    again = api.post(f"/v1/tasks/{task_id}/cancel")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "task_already_finished")
    assert api.get(f"/v1/tasks/{task_id}").json()["error"]["code"] == "cancelled"


@pytest.mark.django_db
def test_another_tenants_task_cannot_be_cancelled(api, openai_channel, outsider_key):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json").json()[
        "id"
    ]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {outsider_key.secret}")
    answer = api.post(f"/v1/tasks/{task_id}/cancel")
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "task_not_found")
    assert Task.objects.get(pk=task_id).status == "pending"


@pytest.mark.django_db
def test_the_admin_cancels_pending_tasks_and_asks_workers_to_stop_processing_ones(api, openai_channel):
    pending, processing = submit(api), submit(api)
    Task.objects.filter(pk=processing).update(status="processing", lease_owner="elsewhere:1")
    response = admin_client().post(
        "/admin/tasks/task/", {"action": "cancel", "_selected_action": [pending, processing]}, follow=True
    )
    assert "1 pending tasks cancelled" in " ".join(str(m) for m in response.context["messages"])
    assert Task.objects.get(pk=pending).status == "cancelled"
    asked = Task.objects.get(pk=processing)
    assert asked.status == "processing" and asked.cancel_requested_at is not None

    # its worker died before it heard: reclaim settles it as cancelled instead of running it again
    Task.objects.filter(pk=processing).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases_reclaim()["cancelled"] == 1
    asked.refresh_from_db()
    assert asked.status == "cancelled" and held(asked) == (0, 0)
