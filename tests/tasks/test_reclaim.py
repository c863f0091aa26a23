"""Tasks a dead process left behind are requeued or failed, never lost, and their credits settle."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from tasks.jobs import task_run, tasks_reclaim_job
from tasks.models import StreamChunk, Task, TaskAttempt
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def submit(api, **body) -> Task:
    response = api.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "hello", **body}, format="json"
    )
    return Task.objects.get(pk=response.json()["id"])


def test_a_task_whose_worker_died_is_requeued_and_then_completes(api, openai_channel, settings):
    task = submit(api)
    old = timezone.now() - timedelta(seconds=settings.TASK_DEADLINE_SECONDS + settings.UPSTREAM_TIMEOUT + 61)
    Task.objects.filter(pk=task.pk).update(status="processing", started_at=old)
    TaskAttempt.objects.create(task=task, channel=openai_channel, number=1, started_at=old)
    queued = OrmQ.objects.count()

    assert tasks_reclaim_job() == {"requeued": 1, "failed": 0, "cancelled": 0}
    task.refresh_from_db()
    assert task.status == "pending" and OrmQ.objects.count() == queued + 1
    assert TaskAttempt.objects.get(task=task, number=1).error_code == "internal_error"

    task_run(task.id)
    task.refresh_from_db()
    assert task.status == "completed" and task.attempts.count() == 2


def test_a_task_pending_too_long_is_queued_again(api, openai_channel, settings):
    task = submit(api)
    Task.objects.filter(pk=task.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.RECLAIM_PENDING_SECONDS + 1)
    )
    queued = OrmQ.objects.count()
    assert tasks_reclaim_job()["requeued"] == 1 and OrmQ.objects.count() == queued + 1
    assert submit(api) and tasks_reclaim_job()["requeued"] == 1  # a fresh pending task is left alone


def test_a_stream_cut_by_a_dead_worker_fails_and_charges_what_was_delivered(
    api, tenant, openai_channel, settings
):
    task = submit(api, stream=True)
    old = timezone.now() - timedelta(seconds=settings.TASK_DEADLINE_SECONDS + settings.UPSTREAM_TIMEOUT + 61)
    Task.objects.filter(pk=task.pk).update(status="processing", started_at=old)
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "partial answer here"}, "finish_reason": None}],
    }
    StreamChunk.objects.create(task=task, seq=0, data=json.dumps(chunk))

    assert tasks_reclaim_job() == {"requeued": 0, "failed": 1, "cancelled": 0}
    task.refresh_from_db()
    assert task.status == "failed" and task.error_code == "internal_error"
    assert task.charge_basis == "delivered_estimate" and task.credits_charged > 0
    assert Tenant.objects.get(pk=tenant.pk).held == 0
