"""Recovery of tasks a dead process left behind."""

import json
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from tasks.models import StreamChunk, Task, TaskAttempt
from tasks.relay.calls import StreamAssembly
from tasks.relay.settle import task_fail


def tasks_reclaim() -> dict[str, int]:
    """Recover tasks a dead process left behind. Run on schedule.

    - pending for RECLAIM_PENDING_SECONDS: its job was never queued (the process died between commit and
      enqueue) or was lost; queue it again (a duplicate is harmless: claiming is conditional);
    - processing past its deadline plus a call's timeout: its worker died. Without streamed output it goes
      back to pending and is queued again; with output already delivered it fails, charged by the rule.
    """
    now = timezone.now()
    requeued = failed = 0
    stale_pending = Task.objects.filter(
        status=Task.Status.PENDING, created_at__lt=now - timedelta(seconds=settings.RECLAIM_PENDING_SECONDS)
    )
    for task_id in stale_pending.values_list("id", flat=True)[:1000]:
        async_task("tasks.jobs.task_run", task_id, task_name=task_id)
        requeued += 1
    lease = timedelta(seconds=settings.TASK_DEADLINE_SECONDS + settings.UPSTREAM_TIMEOUT + 60)
    for task in Task.objects.filter(status=Task.Status.PROCESSING, started_at__lt=now - lease)[:1000]:
        TaskAttempt.objects.filter(task=task, finished_at__isnull=True).update(
            finished_at=now, error_code="internal_error", error_message="the worker stopped during this call"
        )
        chunks = list(StreamChunk.objects.filter(task=task).values_list("data", flat=True))
        if chunks:
            assembly = StreamAssembly(started=0)
            for data in chunks:
                assembly.add(json.loads(data))
            task_fail(
                task=task,
                code="internal_error",
                message="The worker stopped mid-stream.",
                usage=assembly.usage,
                delivered_tokens=assembly.tokens,
            )
            failed += 1
        elif Task.objects.filter(
            pk=task.pk, status=Task.Status.PROCESSING, started_at=task.started_at
        ).update(status=Task.Status.PENDING, progress=0, started_at=None):
            async_task("tasks.jobs.task_run", task.id, task_name=task.id)
            requeued += 1
    return {"requeued": requeued, "failed": failed}
