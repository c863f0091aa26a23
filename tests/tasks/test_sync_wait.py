"""A sync request's wait (tasks/selectors.py task_wait): the settlement's notification carries the outcome of
a sync request's task, so the waiter answers without reading the task; an outcome too large for a
notification is read."""

import asyncio

import psycopg
import pytest

from tasks import selectors
from tasks.events import CHANNEL, PAYLOAD_LIMIT, Subscription, conninfo
from tasks.jobs import task_run
from tasks.selectors import TaskOutcome, task_outcome, task_wait
from tasks.serializers import GenerationRequestSerializer
from tasks.services import task_submit

pytestmark = pytest.mark.django_db(transaction=True)  # notifications go out when the settlement commits


def settled_notification(issued_key, prompt: str, *, sync: bool = True) -> tuple[str, str]:
    """Admit a task as a request with `sync` does, run it here, and return its id and the notification
    its settlement sent."""
    request = GenerationRequestSerializer(data={"model": "fake-model", "prompt": prompt, "sync": sync})
    request.is_valid(raise_exception=True)
    task_id = task_submit(api_key=issued_key.api_key, validated=request.validated_data).task.pk
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
    api, issued_key, openai_channel, monkeypatch
):
    task_id, payload = settled_notification(issued_key, "héllo ✓ " * 20)
    outcome, reads = waited(task_id, payload, monkeypatch)
    assert reads == 0
    assert outcome == task_outcome(task_id=task_id)
    assert outcome.status == "completed" and outcome.result["choices"][0]["message"]["content"].startswith(
        "Echo: héllo ✓"
    )
    # The same keys in the same order as the stored jsonb, so the answer renders as GET /v1/tasks does.
    assert list(outcome.result) == list(api.get(f"/v1/tasks/{task_id}").json()["results"][0])


def test_an_outcome_too_large_for_a_notification_is_read_from_the_task(
    issued_key, openai_channel, monkeypatch
):
    task_id, payload = settled_notification(issued_key, "x" * PAYLOAD_LIMIT)
    assert payload == task_id
    outcome, reads = waited(task_id, payload, monkeypatch)
    assert reads == 1
    assert outcome.status == "completed" and len(outcome.result["choices"][0]["message"]["content"]) > (
        PAYLOAD_LIMIT
    )


def test_a_task_no_sync_request_waits_for_is_announced_by_its_id_alone(issued_key, openai_channel):
    """Nothing would read the outcome: the settlement does not build it."""
    task_id, payload = settled_notification(issued_key, "Hi", sync=False)
    assert payload == task_id
