"""A sync request's wait (tasks/selectors.py task_wait): the settlement's notification carries the outcome,
so the waiter answers without reading the task; an outcome too large for a notification is read."""

import asyncio

import psycopg
import pytest

from tasks import selectors
from tasks.events import CHANNEL, PAYLOAD_LIMIT, Subscription, conninfo
from tasks.jobs import task_run
from tasks.selectors import TaskOutcome, task_outcome, task_wait

pytestmark = pytest.mark.django_db(transaction=True)  # notifications go out when the settlement commits


def settled_notification(api, prompt: str) -> tuple[str, str]:
    """Submit a task, run it here, and return its id and the notification its settlement sent."""
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": prompt}, format="json")
    task_id = response.json()["id"]
    with psycopg.connect(**conninfo(), autocommit=True) as listening:
        listening.execute(f"LISTEN {CHANNEL}")
        task_run(task_id)
        (notify,) = listening.notifies(timeout=10, stop_after=1)
    return task_id, notify.payload


def waited(task_id: str, payload: str, monkeypatch) -> tuple[TaskOutcome, int]:
    """What task_wait answers once it has heard `payload`, and how many times it read the task."""
    reads = []

    def counted(*, task_id: str) -> TaskOutcome:
        reads.append(task_id)
        return task_outcome(task_id=task_id)

    monkeypatch.setattr(selectors, "task_outcome", counted)
    heard = Subscription()
    heard.hear(payload)
    return asyncio.run(task_wait(task_id=task_id, heard=heard, timeout=5)), len(reads)


def test_a_finished_tasks_notification_carries_its_outcome_and_the_waiter_reads_nothing(
    api, openai_channel, monkeypatch
):
    task_id, payload = settled_notification(api, "héllo ✓ " * 20)
    outcome, reads = waited(task_id, payload, monkeypatch)
    assert reads == 0
    assert outcome == task_outcome(task_id=task_id)
    assert outcome.status == "completed" and outcome.result["choices"][0]["message"]["content"].startswith(
        "Echo: héllo ✓"
    )
    # The same keys in the same order as the stored jsonb, so the answer renders as GET /v1/tasks does.
    assert list(outcome.result) == list(api.get(f"/v1/tasks/{task_id}").json()["results"][0])


def test_an_outcome_too_large_for_a_notification_is_read_from_the_task(api, openai_channel, monkeypatch):
    task_id, payload = settled_notification(api, "x" * PAYLOAD_LIMIT)
    assert payload == task_id
    outcome, reads = waited(task_id, payload, monkeypatch)
    assert reads == 1
    assert outcome.status == "completed" and len(outcome.result["choices"][0]["message"]["content"]) > (
        PAYLOAD_LIMIT
    )
