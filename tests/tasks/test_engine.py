"""One worker process's relay loop runs many generations at once, within its slots."""

import threading
import time
import uuid
from decimal import Decimal

import pytest

from tasks.models import Task
from tasks.relay.engine import Engine

pytestmark = pytest.mark.django_db(transaction=True)  # the engine's threads see only committed rows


@pytest.fixture(autouse=True)
def own_queue(monkeypatch):
    """Queue these tests' jobs where no cluster listens: the session's stack must not run them."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"engine-unit-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def engine():
    running = Engine(concurrency=8, db_threads=2, chunk_connections=1)
    yield running
    running.close()


def submitted_task(api) -> str:
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hello"}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["id"]


def chat_requests(fake) -> int:
    return len([r for r in fake.requests if r["path"] == "/v1/chat/completions"])


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_one_process_holds_eight_upstream_calls_open_at_once(api, openai_channel, fake_openai, engine):
    fake_openai.configure(latency=2)
    ids = [submitted_task(api) for _ in range(8)]
    for task_id in ids:
        assert engine.admit(task_id)  # returns at once: the call runs on the loop

    wait_for(lambda: chat_requests(fake_openai) == 8)
    # Every call reached the upstream before the first answer: they were all open together.
    assert not Task.objects.filter(pk__in=ids, status="completed").exists()
    wait_for(lambda: Task.objects.filter(pk__in=ids, status="completed").count() == 8)
    for task in Task.objects.filter(pk__in=ids):
        assert task.credits_charged > Decimal(0) and task.lease_owner == engine.rt.owner


def test_a_full_loop_makes_the_next_admission_wait_for_a_free_slot(api, openai_channel, fake_openai):
    fake_openai.configure(latency=1)
    small = Engine(concurrency=2, db_threads=2, chunk_connections=1)
    try:
        ids = [submitted_task(api) for _ in range(3)]
        small.admit(ids[0])
        small.admit(ids[1])
        small.admit(ids[2])  # blocks until one of the first two finished
        assert Task.objects.filter(pk__in=ids[:2], status="completed").count() >= 1
        wait_for(lambda: Task.objects.filter(pk__in=ids, status="completed").count() == 3)
        assert chat_requests(fake_openai) == 3
    finally:
        small.close()


def test_leases_are_renewed_while_every_relay_thread_is_busy(api, openai_channel, fake_openai, settings):
    """A backlog of generations' statements must not delay a renewal past the lease: the task would be
    reclaimed while it still runs here, and sent upstream a second time."""
    settings.LEASE_RENEW_SECONDS = 0.1
    fake_openai.configure(latency=30)
    busy = Engine(concurrency=2, db_threads=1, chunk_connections=1)
    release = threading.Event()
    try:
        task_id = submitted_task(api)
        busy.admit(task_id)
        wait_for(lambda: chat_requests(fake_openai) == 1)  # claimed, leased, and calling the upstream
        first = Task.objects.get(pk=task_id).lease_expires_at
        busy.db_pool.submit(release.wait, 30)  # the one relay thread is taken until released
        wait_for(lambda: Task.objects.get(pk=task_id).lease_expires_at > first)
    finally:
        release.set()
        busy.close()
