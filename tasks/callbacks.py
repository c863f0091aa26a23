"""Task callbacks: a task submitted with `callback_url` has its final task object, as GET /v1/tasks/{id}
answers it, POSTed there once it is settled, signed with its tenant's callback secret and retried as
foxgate/webhooks.py says, every attempt recorded on its CallbackDelivery (shown on the task in the admin).
Sent from the worker cluster: settlement queues the job (tasks.jobs.callback_send_job), and the scheduled
`callbacks_resume` takes up what a dead process left."""

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone
from django_q.tasks import async_task

from foxgate import webhooks
from tasks.models import CallbackDelivery, Task
from tasks.selectors import task_as_api
from tenants.services import callback_secret

RESUME_AFTER = timedelta(minutes=1)
RESUME_WITHIN = timedelta(days=1)  # a callback not sent within a day of its task's end is given up


def callback_send_later(task_id: str) -> None:
    async_task("tasks.jobs.callback_send_job", task_id, task_name=f"callback-{task_id}")


def callback_send(task_id: str, *, background: bool = True) -> None:
    """Deliver the task's callback: in a thread (`background`), so the worker is free at once. Claimed by
    creating its delivery record, so a job delivered twice sends once."""
    task = Task.objects.select_related("tenant").get(pk=task_id)
    delivery, created = CallbackDelivery.objects.get_or_create(task=task, defaults={"url": task.callback_url})
    if created:
        _deliver(delivery, task, background=background)


def _deliver(delivery: CallbackDelivery, task: Task, *, background: bool) -> None:
    send = webhooks.deliver_in_background if background else webhooks.deliver
    send(delivery, url=delivery.url, secret=callback_secret(task.tenant), payload=task_as_api(task))


def callbacks_resume() -> int:
    """Callbacks a dead process left (scheduled): of tasks finished a minute ago, those never claimed,
    and deliveries left pending with no attempt for a minute."""
    now = timezone.now()
    since = now - RESUME_AFTER
    unsent = Task.objects.filter(
        callback_url__gt="", finished_at__lt=since, finished_at__gte=now - RESUME_WITHIN
    ).exclude(Exists(CallbackDelivery.objects.filter(task=OuterRef("pk"))))
    resumed = 0
    for task_id in unsent.values_list("pk", flat=True)[:1000]:
        callback_send(task_id, background=False)
        resumed += 1
    pending = CallbackDelivery.objects.filter(status=CallbackDelivery.Status.PENDING, created_at__lt=since)
    for delivery in pending.select_related("task__tenant")[:1000]:
        if webhooks.stale(delivery, since):
            _deliver(delivery, delivery.task, background=False)
            resumed += 1
    return resumed
