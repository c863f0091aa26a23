"""The relay under faults, with real processes: a worker killed mid-flight, a cluster stopped with SIGTERM,
and a cluster whose every slot is taken. Each test runs its own web server, cluster and fake provider on a
queue of its own, so the session's stack cannot take its jobs."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db import connection
from psycopg.conninfo import make_conninfo

from foxgate.stack import Stack
from tasks.models import Task
from tasks.services import channel_add, price_set
from tenants.models import LedgerEntry
from tests.conftest import free_port
from tests.helpers import tenant_client


def database_url() -> str:
    db = connection.settings_dict
    return make_conninfo(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )


@pytest.fixture
def start_stack(
    django_db_setup, transactional_db, tmp_path
) -> Iterator[Callable[..., tuple[Stack, httpx.Client]]]:
    """Start a stack with these environment overrides; `fake-model` served by its fake provider."""
    started: list[Stack] = []
    clients = contextlib.ExitStack()

    def start(**env: str) -> tuple[Stack, httpx.Client]:
        stack = Stack(
            web_port=free_port(),
            fake_port=free_port(),
            env={
                "DATABASE_URL": database_url(),
                "FOXGATE_CLUSTER_NAME": f"faults-{uuid.uuid4().hex[:8]}",
                **env,
            },
            log_dir=tmp_path / "logs",
        ).start()
        started.append(stack)
        price_set(model_name="fake-model", input_per_million=Decimal(1), output_per_million=Decimal(2))
        channel_add(
            name="fake",
            provider="openai",
            base_url=f"{stack.fake_url}/v1",
            api_key="",
            model_names=["fake-model"],
        )
        client = clients.enter_context(tenant_client(stack, f"faults-{uuid.uuid4().hex[:6]}"))
        return stack, client

    yield start
    clients.close()
    for stack in started:
        stack.stop()


def submit(client: httpx.Client, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post("/v1/llm/generations", json={"model": "fake-model", "prompt": "hello"})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.05)


def count(ids: list[str], status: str) -> int:
    return Task.objects.filter(pk__in=ids, status=status).count()


def assert_charged_once_each(ids: list[str]) -> None:
    captures = Counter(
        LedgerEntry.objects.filter(task_id__in=ids, kind="capture").values_list("task_id", flat=True)
    )
    assert captures == Counter(dict.fromkeys(ids, 1))
    audit = subprocess.run(
        [sys.executable, "-m", "foxgate", "billing_audit"],
        env={**os.environ, "FOXGATE_DATA_DIR": str(settings.DATA_DIR), "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_kill_9_of_a_worker_with_50_generations_in_flight_loses_none_and_charges_each_once(start_stack):
    stack, client = start_stack(FOXGATE_WORKERS="1")
    # Slow enough that all 50 are in flight together however slowly they are submitted; reruns take 3 s.
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 60})
    ids = submit(client, 50)
    wait_for(lambda: count(ids, "processing") == 50, 20, "50 tasks processing at once")
    (owner,) = set(Task.objects.filter(pk__in=ids).values_list("lease_owner", flat=True))
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 3})

    os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
    wait_for(lambda: count(ids, "completed") == 50, 30, "every task completing after the kill")

    assert not Task.objects.filter(pk__in=ids, lease_owner=owner).exists()  # all rerun by the new worker
    assert_charged_once_each(ids)


def sigterm_with_ten_in_flight(stack, client, *, latency: float, exit_within: float) -> list[str]:
    """Ten generations running on a `latency`-second upstream, then SIGTERM to the cluster's main
    process; returns their ids once the cluster exited (within `exit_within` seconds, or raises)."""
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": latency})
    ids = submit(client, 10)
    wait_for(lambda: count(ids, "processing") == 10, 10, "10 tasks processing")
    cluster = stack.processes["worker cluster"]
    cluster.send_signal(signal.SIGTERM)
    cluster.wait(timeout=exit_within)
    return ids


def test_sigterm_hands_back_what_cannot_finish_in_time_and_a_new_cluster_completes_it(start_stack):
    stack, client = start_stack(FOXGATE_WORKERS="2", FOXGATE_DRAIN_SECONDS="2")
    # drain (2 s) and hand-back are bounded: raises if the cluster hangs
    ids = sigterm_with_ten_in_flight(stack, client, latency=8, exit_within=20)

    assert count(ids, "pending") == 10  # handed back: not lost, not stuck processing, not charged
    assert not LedgerEntry.objects.filter(task_id__in=ids, kind="capture").exists()
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 0})
    stack._spawn("worker cluster 2", [sys.executable, "-m", "foxgate", "qcluster"])
    wait_for(lambda: count(ids, "completed") == 10, 30, "the new cluster completing the handed-back tasks")
    assert_charged_once_each(ids)


def test_sigterm_lets_in_flight_generations_finish_within_the_drain_time(start_stack):
    stack, client = start_stack(FOXGATE_WORKERS="1", FOXGATE_DRAIN_SECONDS="30")
    ids = sigterm_with_ten_in_flight(stack, client, latency=3, exit_within=30)

    assert count(ids, "completed") == 10
    assert_charged_once_each(ids)


def test_with_every_slot_taken_new_tasks_wait_pending_and_start_as_slots_free(start_stack):
    stack, client = start_stack(FOXGATE_WORKERS="1", FOXGATE_WORKER_CONCURRENCY="4")
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.5})
    ids = submit(client, 10)
    most_processing = 0
    seen_waiting = False
    deadline = time.monotonic() + 30
    while count(ids, "completed") < 10:
        assert time.monotonic() < deadline, "the tasks did not all complete within 30 s"
        processing, pending = count(ids, "processing"), count(ids, "pending")
        most_processing = max(most_processing, processing)
        seen_waiting = seen_waiting or (processing == 4 and pending > 0)
        time.sleep(0.05)
    assert most_processing == 4 and seen_waiting
    assert_charged_once_each(ids)
