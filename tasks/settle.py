"""The one place a finished call becomes money: charge by the settlement rule, release the rest of the hold,
store the outcome, and tell the web processes. A cancel ends a task here too."""

import json
import logging
from decimal import Decimal

from django.utils import timezone

from foxgate.database import prepared_cursor
from foxgate.errors import TaskAlreadyFinished
from foxgate.tracing import span, stored_parent
from tasks.callbacks import callback_send_later
from tasks.events import CHANNEL as EVENTS
from tasks.events import FINISHED, PAYLOAD_LIMIT
from tasks.models import Channel, Task, TaskAttempt
from tasks.retention import sealed
from tasks.services import estimate_input_tokens
from tenants.alerts import alerts_fire, alerts_send_later
from tenants.limits import LIMITS_SETTLE, limits_settle
from tenants.services import CREDITS_SETTLE, credits_settle

logger = logging.getLogger(__name__)


def task_fail(
    *,
    task: Task,
    code: str,
    message: str,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
) -> bool:
    """Fail the task; `usage` and `delivered_tokens` say what a broken stream had already produced.
    True if this call settled it (see task_finish)."""
    return task_finish(
        task,
        status=Task.Status.FAILED,
        error=(code, message),
        usage=usage,
        delivered_tokens=delivered_tokens,
        channel=channel,
    )


def task_cancelled(
    task: Task,
    *,
    message: str,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
    unfinished: tuple[str, ...] = Task.UNFINISHED,
) -> bool:
    """Settle the task as cancelled (error code `cancelled`), charged by the rule like a failure: what the
    provider reported, else what was delivered. True if this call settled it (see task_finish)."""
    return task_finish(
        task,
        status=Task.Status.CANCELLED,
        error=(Task.Status.CANCELLED, message),
        usage=usage,
        delivered_tokens=delivered_tokens,
        channel=channel,
        unfinished=unfinished,
    )


def task_charge(task: Task, *, usage: dict | None, delivered_tokens: int = 0) -> tuple[Decimal, str, int]:
    """The settlement rule: (cost, basis, tokens used) for a task that ends, well or badly.

    - provider_usage: the provider reported usage (a finished call, or a stream that broke after its
      usage arrived): charge exactly that, cached input and prompt cache writes at their own prices.
    - delivered_estimate: no usage, but output was delivered before the failure (a stream cut mid-way):
      charge the estimated input plus the output tokens delivered.
    - nothing_delivered: no usage and no output: nothing is charged.
    """
    if usage:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        # Anthropic's prompt cache writes (tasks/relay/providers/anthropic.py), 1-hour ones apart
        written = usage.get("cache_creation_input_tokens") or 0
        written_1h = (usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0
        output_tokens = usage.get("completion_tokens") or 0  # none for embeddings
        cost = task.price.cost(
            input_tokens=usage["prompt_tokens"],
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            cache_write_tokens=written - written_1h,
            cache_write_1h_tokens=written_1h,
        )
        return cost, "provider_usage", usage["prompt_tokens"] + output_tokens
    if delivered_tokens:
        input_tokens = estimate_input_tokens(task.request["messages"], task.upstream_parameters.get("tools"))
        cost = task.price.cost(input_tokens=input_tokens, output_tokens=delivered_tokens)
        return cost, "delivered_estimate", input_tokens + delivered_tokens
    return Decimal(0), "nothing_delivered", 0


# What an attempt's end records; the success path stores them in the settling statement.
ATTEMPT_END_FIELDS = [
    "finished_at",
    "latency_ms",
    "first_token_ms",
    "http_status",
    "error_code",
    "error_message",
]

# The gate: the task row moves from unfinished (pending or processing) to finished here, under its row lock,
# act only for the row it returns. A task already finished (a redelivered job, a settle that lost the
# race) returns no row, so nothing else changes and no notification goes out.
SETTLED = """
WITH settled AS (
    UPDATE tasks_task SET status = %(status)s, progress = 100, result = %(result)s::jsonb,
        error_code = %(error_code)s, error_message = %(error_message)s, finished_at = %(finished_at)s,
        channel_id = %(channel)s, credits_charged = %(settle_cost)s, charge_basis = %(settle_basis)s
    WHERE id = %(task)s AND status = ANY(%(unfinished)s)
    RETURNING id, tenant_id, api_key_id, price_id, end_user
)"""
# A successful call's attempt, and its channel's breaker closing, are recorded whatever the gate says:
# they are facts about the channel, true even when another delivery settled the task first.
SUCCEEDED = """
attempt_end AS (
    UPDATE tasks_taskattempt SET finished_at = %(attempt_finished_at)s, latency_ms = %(latency_ms)s,
        first_token_ms = %(first_token_ms)s, http_status = %(http_status)s, error_code = '',
        error_message = ''
    WHERE id = %(attempt)s
    RETURNING 1
),
breaker_close AS (
    UPDATE tasks_channel SET circuit_state = 'closed', circuit_open_until = NULL, circuit_reason = '',
        circuit_changed_at = %(finished_at)s
    WHERE id = %(channel)s AND circuit_state <> 'closed'
    RETURNING 1
)"""
# Sent when the statement commits. For a sync request's task it carries the outcome its waiter answers
# with (tasks/events.py), built here so that the result reads exactly as the stored jsonb does (its key
# order is jsonb's), when it fits a notification; else, and for every other task, the bare id. OFFSET 0
# keeps PostgreSQL from pulling the subquery up, which would build the outcome once per mention.
NOTIFY = """
SELECT pg_notify(
    %(events)s, CASE WHEN octet_length(outcome) <= %(payload_limit)s THEN outcome ELSE id END
)::text
FROM (
    SELECT id, CASE WHEN %(carry_outcome)s THEN id || ' ' || %(finished)s || ' ' || json_build_object(
        'status', %(status)s::text, 'result', %(result)s::jsonb,
        'error_code', %(error_code)s::text, 'error_message', %(error_message)s::text
    ) END AS outcome
    FROM settled
    OFFSET 0
) finished"""
# Composed of constants only: every value is a bound parameter.
SETTLE = f"{SETTLED}, {CREDITS_SETTLE}, {LIMITS_SETTLE}\n{NOTIFY}"
SETTLE_SUCCESS = f"{SETTLED}, {CREDITS_SETTLE}, {LIMITS_SETTLE}, {SUCCEEDED}\n{NOTIFY}"


def task_finish(
    task: Task,
    *,
    status: str,
    result: dict | None = None,
    error: tuple[str, str] | None = None,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
    attempt: TaskAttempt | None = None,
    unfinished: tuple[str, ...] = Task.UNFINISHED,
) -> bool:
    """Settle credits, store the outcome and tell the web processes, in one statement (one round trip,
    one transaction). With `attempt` (a successful call, its end filled in), the same statement records
    it and closes its channel's breaker. True if this call settled the task.

    The gate (the conditional update of the task row, which waits for its row lock) makes this safe to
    call twice (a redelivered job): the second call finds the task finished and changes nothing. It
    settles the task only from a status of `unfinished`: a cancel of a pending task must not settle one
    a worker claimed meanwhile."""
    cost, basis, tokens = task_charge(task, usage=usage, delivered_tokens=delivered_tokens)
    if result is not None and usage is None:
        # A stream that ended without reporting usage: show what it was charged for.
        input_tokens = tokens - delivered_tokens
        result["usage"] = {
            "prompt_tokens": input_tokens,
            "completion_tokens": delivered_tokens,
            "total_tokens": tokens,
        }
    error_code, error_message = error or ("", "")
    finished_at = timezone.now()
    params = credits_settle(task=task, cost=cost, basis=basis) | limits_settle(tokens=tokens)
    params |= {
        "task": task.pk,
        "unfinished": list(unfinished),
        "status": status,
        "result": None if result is None else json.dumps(sealed(result) if task.content_sealed else result),
        "error_code": error_code,
        "error_message": error_message,
        "finished_at": finished_at,
        "channel": channel.pk if channel is not None else None,
        "events": EVENTS,
        "carry_outcome": task.sync and not task.stream,  # only a sync waiter answers from it
        "finished": FINISHED,
        "payload_limit": PAYLOAD_LIMIT,
    }
    if attempt is not None:
        params |= {
            "attempt": attempt.pk,
            "attempt_finished_at": attempt.finished_at,
            "latency_ms": attempt.latency_ms,
            "first_token_ms": attempt.first_token_ms,
            "http_status": attempt.http_status,
        }
    parent = task.trace_span or stored_parent(task.traceparent)
    with span("settlement", parent=parent, task_id=task.pk, status=status, basis=basis) as settlement:
        with prepared_cursor() as cursor:
            cursor.execute(SETTLE if attempt is None else SETTLE_SUCCESS, params)
            settled = cursor.fetchone() is not None
        settlement.set_attribute("foxgate.credits_charged", str(params["settle_cost"]) if settled else "")
    if not settled:
        return False
    task.status, task.progress, task.result = status, 100, result
    task.error_code, task.error_message, task.finished_at = error_code, error_message, finished_at
    task.channel, task.credits_charged, task.charge_basis = channel, params["settle_cost"], basis
    if task.callback_url:
        callback_send_later(task.id)
    if task.credits_charged:
        fired = alerts_fire(tenant_id=task.tenant_id, api_key_id=task.api_key_id, watched=task.alerts_watched)
        alerts_send_later(fired)
    logger.info(
        "task %s %s%s; charged %s credits (%s)",
        task.id,
        status,
        f" ({error_code})" if error else "",
        task.credits_charged,
        basis,
    )
    return True


CANCEL_REQUEST = """
UPDATE tasks_task SET cancel_requested_at = coalesce(cancel_requested_at, now())
WHERE id = %(task)s AND status = 'processing'
RETURNING id
"""


def task_cancel(task: Task, *, by: str) -> bool:
    """Cancel an unfinished task. True: it was pending and is cancelled now, its whole hold released.
    False: it is processing, and its worker is asked to stop its call (it reads the request within
    CANCEL_POLL_SECONDS), charge what the provider reported or else what was delivered, and settle it as
    cancelled (tasks/relay/engine.py). A task that finished first raises TaskAlreadyFinished.

    Each step is conditional on the status it acts on, so a task a worker claims, or hands back, while
    this runs is caught in its new status at the next turn."""
    message = f"Cancelled by {by}."
    for _ in range(3):
        if task.status == Task.Status.PENDING:
            if task_cancelled(task, message=message, unfinished=(Task.Status.PENDING,)):
                return True
        elif task.status == Task.Status.PROCESSING:
            with prepared_cursor() as cursor:
                cursor.execute(CANCEL_REQUEST, {"task": task.pk})
                if cursor.fetchone() is not None:
                    logger.info("task %s: its worker was asked to stop (%s)", task.pk, message)
                    return False
        else:
            break
        task.refresh_from_db(fields=["status"])
    if task.is_finished:
        raise TaskAlreadyFinished(f"Task {task.pk} has already finished ({task.status}).")
    return False
