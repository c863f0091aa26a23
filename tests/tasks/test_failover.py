"""Routing and circuit breakers with the real worker cluster: four worker processes share breaker state
through the database. Two in-process fake providers play a primary and a secondary upstream."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from foxgate.fakes.openai import FakeOpenAI
from tasks.models import Channel, Task
from tasks.services import channel_add, price_set
from tests.helpers import database_dump, poll_until_finished, tenant_client

pytestmark = pytest.mark.e2e


@pytest.fixture
def upstreams(stack_db):
    with FakeOpenAI() as primary, FakeOpenAI(reply="from secondary") as secondary:
        price_set(model_name="routed-model", input_per_million=Decimal(1), output_per_million=Decimal(1))
        channel_add(
            name="primary",
            provider="openai",
            base_url=primary.base_url,
            api_key="sk-primary-secret-1",
            model_names=["routed-model"],
            priority=10,
        )
        channel_add(
            name="secondary",
            provider="openai",
            base_url=secondary.base_url,
            api_key="",
            model_names=["routed-model"],
            priority=0,
        )
        yield primary, secondary


@pytest.fixture
def client(stack, upstreams):
    with tenant_client(stack, "routing", credits=Decimal(100)) as c:
        yield c


def run(client, prompt: str = "hi") -> dict:
    response = client.post("/v1/llm/generations", json={"model": "routed-model", "prompt": prompt})
    assert response.status_code == 200, response.json()
    task = poll_until_finished(client, response.json()["id"], timeout=30)
    assert task["status"] == "completed", task
    return task


def attempts(task_id: str) -> list[tuple[str, int | None, str]]:
    return [
        (a.channel.name, a.http_status, a.error_code)
        for a in Task.objects.get(pk=task_id).attempts.select_related("channel").order_by("number")
    ]


def test_a_failing_primary_hands_the_task_to_the_secondary(client, upstreams):
    primary, _ = upstreams
    primary.configure(status=500)
    task = run(client)
    assert task["results"][0]["choices"][0]["message"]["content"] == "from secondary"
    assert attempts(task["id"]) == [("primary", 500, "upstream_error"), ("secondary", 200, "")]


def test_429_with_retry_after_cools_the_channel_down_that_long(client, upstreams):
    primary, _ = upstreams
    primary.configure(status=429, retry_after=3)
    first = run(client)
    assert attempts(first["id"])[0] == ("primary", 429, "upstream_error")
    channel = Channel.objects.get(name="primary")
    assert channel.circuit_state == "open" and "Retry-After 3" in channel.circuit_reason
    assert channel.circuit_open_until >= timezone.now() + timedelta(seconds=2)

    during = run(client)
    assert attempts(during["id"]) == [("secondary", 200, "")]  # the cooling channel is not even tried

    primary.reset()
    time.sleep(max(0.0, (channel.circuit_open_until - timezone.now()).total_seconds()) + 0.1)
    after = run(client)
    assert attempts(after["id"]) == [("primary", 200, "")]
    assert Channel.objects.get(name="primary").circuit_state == "closed"


def test_breaker_opens_at_the_threshold_then_lets_one_trial_through_and_closes(client, upstreams):
    primary, _ = upstreams
    primary.configure(status=500)
    for n in range(5):  # 5 calls, all failing: the minimum count at a 100% error rate
        run(client, f"fail {n}")
    channel = Channel.objects.get(name="primary")
    assert channel.circuit_state == "open" and "5 of 5 calls failed" in channel.circuit_reason
    skipped = run(client)
    assert attempts(skipped["id"]) == [("secondary", 200, "")]

    primary.configure(status=None, latency=0.5)  # healthy again, but slow: concurrent tasks would overlap
    time.sleep(max(0.0, (channel.circuit_open_until - timezone.now()).total_seconds()) + 0.1)
    ids = [
        client.post("/v1/llm/generations", json={"model": "routed-model", "prompt": f"after {n}"}).json()[
            "id"
        ]
        for n in range(6)
    ]
    for task_id in ids:
        assert poll_until_finished(client, task_id, timeout=30)["status"] == "completed"

    on_primary = Channel.objects.get(name="primary").attempts.filter(task_id__in=ids).order_by("started_at")
    trial, *rest = on_primary
    assert trial.http_status == 200
    # While the trial ran, no other worker called the primary: every later call started after it ended.
    assert all(attempt.started_at >= trial.finished_at for attempt in rest)
    workers = set(Task.objects.filter(pk__in=ids).values_list("attempts__channel__name", flat=True))
    assert "secondary" in workers  # the others went to the secondary meanwhile
    assert Channel.objects.get(name="primary").circuit_state == "closed"


def test_rejected_credentials_disable_the_channel_with_the_reason(client, upstreams):
    primary, _ = upstreams
    primary.configure(api_key="sk-the-right-one")  # the channel holds another key: 401
    task = run(client)
    assert attempts(task["id"])[0][:2] == ("primary", 401)
    channel = Channel.objects.get(name="primary")
    assert not channel.enabled and "401" in channel.disabled_reason
    assert "sk-primary-secret-1" not in channel.disabled_reason
    assert attempts(run(client)["id"]) == [("secondary", 200, "")]


def test_no_channel_left_is_503_at_submit(client, upstreams):
    Channel.objects.update(enabled=False)
    response = client.post("/v1/llm/generations", json={"model": "routed-model", "prompt": "x"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_available_channel"


def test_every_channel_failing_ends_all_platforms_exhausted(client, upstreams):
    for fake in upstreams:
        fake.configure(status=503)
    response = client.post("/v1/llm/generations", json={"model": "routed-model", "prompt": "x"})
    task = poll_until_finished(client, response.json()["id"], timeout=30)
    assert task["status"] == "failed" and task["error"]["code"] == "all_platforms_exhausted"
    assert "Tried 2 channels" in task["error"]["message"] and "503" in task["error"]["message"]
    assert [name for name, _, _ in attempts(task["id"])] == ["primary", "secondary"]


def test_upstream_keys_stay_out_of_logs_error_messages_and_the_database(stack, client, upstreams):
    primary, _ = upstreams
    primary.configure(status=500)
    run(client)
    primary.configure(status=None, api_key="sk-the-right-one")
    run(client)  # 401: the channel is disabled, its reason stored

    leaked = "sk-primary-secret-1"
    assert leaked not in database_dump()
    for log in stack.log_dir.iterdir():
        assert leaked not in log.read_text(errors="replace"), log.name
    assert Channel.objects.get(name="primary").api_key == leaked  # still usable once an operator fixes it
