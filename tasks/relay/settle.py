"""The one place a finished call becomes money: charge by the settlement rule, release the rest of the hold,
store the outcome, and tell the web processes."""

import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from tasks.events import task_notify
from tasks.models import Channel, Task
from tasks.services import estimate_input_tokens
from tenants.limits import limits_settle
from tenants.services import credits_settle

logger = logging.getLogger(__name__)


def task_fail(
    *,
    task: Task,
    code: str,
    message: str,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
) -> None:
    """Fail the task; `usage` and `delivered_tokens` say what a broken stream had already produced."""
    task_finish(
        task,
        status=Task.Status.FAILED,
        error=(code, message),
        usage=usage,
        delivered_tokens=delivered_tokens,
        channel=channel,
    )


def task_charge(task: Task, *, usage: dict | None, delivered_tokens: int = 0) -> tuple[Decimal, str, int]:
    """The settlement rule: (cost, basis, tokens used) for a task that ends, well or badly.

    - provider_usage: the provider reported usage (a finished call, or a stream that broke after its
      usage arrived): charge exactly that, cached input at the cached-input price.
    - delivered_estimate: no usage, but output was delivered before the failure (a stream cut mid-way):
      charge the estimated input plus the output tokens delivered.
    - nothing_delivered: no usage and no output: nothing is charged.
    """
    if usage:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        cost = task.price.cost(
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            cached_input_tokens=cached,
        )
        return cost, "provider_usage", usage["prompt_tokens"] + usage["completion_tokens"]
    if delivered_tokens:
        input_tokens = estimate_input_tokens(task.request["messages"])
        cost = task.price.cost(input_tokens=input_tokens, output_tokens=delivered_tokens)
        return cost, "delivered_estimate", input_tokens + delivered_tokens
    return Decimal(0), "nothing_delivered", 0


def task_finish(
    task: Task,
    *,
    status: str,
    result: dict | None = None,
    error: tuple[str, str] | None = None,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
) -> None:
    """Settle credits and store the outcome in one transaction, then tell the web processes.

    The row lock and the finished check make this safe to call twice (a redelivered job)."""
    with transaction.atomic():
        # Lock the task row only: locking the shared price row too would deadlock with admissions.
        task = Task.objects.select_for_update(of=("self",)).select_related("price").get(pk=task.pk)
        if task.is_finished:
            return
        cost, basis, tokens = task_charge(task, usage=usage, delivered_tokens=delivered_tokens)
        if result is not None and usage is None:
            # A stream that ended without reporting usage: show what it was charged for.
            input_tokens = tokens - delivered_tokens
            result["usage"] = {
                "prompt_tokens": input_tokens,
                "completion_tokens": delivered_tokens,
                "total_tokens": tokens,
            }
        credits_settle(task=task, cost=cost, basis=basis)
        limits_settle(task=task, tokens=tokens)
        task.status = status
        task.progress = 100
        task.result = result
        task.error_code, task.error_message = error or ("", "")
        task.finished_at = timezone.now()
        task.channel = channel
        task.save()
        task_notify(task.id)
    logger.info(
        "task %s %s%s; charged %s credits (%s)",
        task.id,
        status,
        f" ({task.error_code})" if error else "",
        cost,
        basis,
    )
