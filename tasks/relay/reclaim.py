"""Recovery of tasks a dead or stopping process left behind, by their leases.

A processing task carries the lease of the process running it (`lease_owner`, `lease_expires_at`), renewed
for all its tasks in one statement every LEASE_RENEW_SECONDS. A lease that lapsed means that process died:
its task is released. Released without streamed output, a task goes back to pending and is queued again
(claiming is conditional, so a duplicate job is harmless); with output already delivered it fails, charged
by the rule, since its clients cannot be given a second answer; asked to stop, it is cancelled."""

import json
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.tasks import async_task

from tasks.models import StreamChunk, Task, TaskAttempt
from tasks.relay.calls import StreamAssembly
from tasks.retention import unsealed, unsealed_text
from tasks.settle import task_cancelled, task_fail


def task_requeue(*, task_id: str) -> None:
    async_task("tasks.jobs.task_run", task_id, task_name=task_id)


def leases_renew(*, owner: str, task_ids: list[str]) -> int:
    """Extend the leases of every task this process is running, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tasks_task SET lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE id = ANY(%s) AND status = 'processing' AND lease_owner = %s",
            [settings.LEASE_SECONDS, task_ids, owner],
        )
        return cursor.rowcount


def cancels_requested(*, task_ids: list[str]) -> list[str]:
    """Which of these running tasks were asked to stop (tasks.settle.task_cancel)."""
    return list(
        Task.objects.filter(pk__in=task_ids, cancel_requested_at__isnull=False).values_list("pk", flat=True)
    )


def task_release(task: Task, *, why: str) -> str:
    """Take back a processing task whose run stopped: 'requeued', 'failed', 'cancelled', or '' if it moved
    on meanwhile. A task with streamed output fails, and one asked to stop is cancelled, each charged by
    the rule; any other goes back to pending.

    The conditional update on the lease it was read with makes a concurrent release (every cluster's loop
    reclaims) or a late renewal win exactly once."""
    unchanged = Task.objects.filter(
        pk=task.pk, status=Task.Status.PROCESSING, lease_expires_at=task.lease_expires_at
    )
    chunks = list(StreamChunk.objects.filter(task=task).order_by("seq").values_list("data", flat=True))
    if chunks or task.cancel_requested_at is not None:
        if not unchanged.update(lease_expires_at=None):
            return ""
        TaskAttempt.objects.filter(task=task, finished_at__isnull=True).update(
            finished_at=timezone.now(), error_code="internal_error", error_message=why
        )
        task.request = unsealed(task.request)  # its estimate reads the messages
        assembly = StreamAssembly(started=0)
        for data in chunks:
            assembly.add(json.loads(unsealed_text(data)))
        delivered = {"usage": assembly.usage, "delivered_tokens": assembly.tokens}
        if task.cancel_requested_at is not None:
            task_cancelled(task, message="Cancelled; its worker stopped meanwhile.", **delivered)
            return Task.Status.CANCELLED
        task_fail(task=task, code="internal_error", message="The worker stopped mid-stream.", **delivered)
        return Task.Status.FAILED
    if not unchanged.update(
        status=Task.Status.PENDING, progress=0, started_at=None, lease_owner="", lease_expires_at=None
    ):
        return ""
    TaskAttempt.objects.filter(task=task, finished_at__isnull=True).update(
        finished_at=timezone.now(), error_code="internal_error", error_message=why
    )
    task_requeue(task_id=task.id)
    return "requeued"


def leases_reclaim() -> dict[str, int]:
    """Release every processing task whose lease lapsed: its process died. Every cluster loop runs this
    every LEASE_RENEW_SECONDS, so a dead worker's tasks run again within about LEASE_SECONDS + that."""
    counts = {"requeued": 0, "failed": 0, "cancelled": 0}
    lapsed = Task.objects.filter(status=Task.Status.PROCESSING, lease_expires_at__lt=timezone.now())
    for task in lapsed.order_by("lease_expires_at")[:1000]:
        outcome = task_release(task, why="the worker stopped during this call")
        if outcome:
            counts[outcome] += 1
    return counts


def tasks_hand_back(*, owner: str, task_ids: list[str]) -> int:
    """Release the tasks a draining process could not finish in time (see Engine.drain)."""
    handed = 0
    for task in Task.objects.filter(pk__in=task_ids, status=Task.Status.PROCESSING, lease_owner=owner):
        handed += bool(task_release(task, why="the worker shut down during this call"))
    return handed


def tasks_reclaim() -> dict[str, int]:
    """Recover tasks a dead process left behind. Run on schedule, as a backstop to the loops' reclaim.

    - pending for RECLAIM_PENDING_SECONDS: its job was never queued (the process died between commit and
      enqueue) or was lost; queue it again (a duplicate is harmless: claiming is conditional);
    - processing with a lapsed lease, or (claimed before leases existed) past its deadline plus a call's
      timeout: its worker died; released as above.
    """
    now = timezone.now()
    requeued = 0
    stale_pending = Task.objects.filter(
        status=Task.Status.PENDING, created_at__lt=now - timedelta(seconds=settings.RECLAIM_PENDING_SECONDS)
    )
    for task_id in stale_pending.values_list("id", flat=True)[:1000]:
        task_requeue(task_id=task_id)
        requeued += 1
    counts = leases_reclaim()
    unleased = Task.objects.filter(
        status=Task.Status.PROCESSING,
        lease_expires_at__isnull=True,
        started_at__lt=now
        - timedelta(seconds=settings.TASK_DEADLINE_SECONDS + settings.UPSTREAM_TIMEOUT + 60),
    )
    for task in unleased[:1000]:
        outcome = task_release(task, why="the worker stopped during this call")
        if outcome:
            counts[outcome] += 1
    return counts | {"requeued": requeued + counts["requeued"]}
