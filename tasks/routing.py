"""Which channel serves a call, and each channel's circuit breaker.

Routing: among the enabled channels that serve the model and are healthy, the highest priority wins;
equal priorities share traffic by weight, at random. A task never returns to a channel that already
failed it. A channel at its max concurrency is skipped while it is full.

Breaker, kept on the Channel row so every worker in every process agrees:
- closed → open when, over the last BREAKER_WINDOW_SECONDS, at least BREAKER_MIN_REQUESTS calls were made
  and at least BREAKER_ERROR_RATE of them failed in a retryable way (5xx, 429, timeouts, dropped
  connections); or at once on a 429 that says Retry-After, for at least that long;
- open → half-open once the cooldown is over: exactly one worker wins the conditional UPDATE that
  claims the trial call; everyone else keeps skipping the channel;
- half-open → closed when the trial succeeds (in the statement that settles its task,
  tasks/settle.py), → open again (a fresh cooldown) when it fails.
An upstream that refuses the channel's own credentials (401/403) disables the channel, reason recorded.
"""

import random
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from foxgate.database import prepared_cursor
from tasks.models import Channel, Model, Task, TaskAttempt

if TYPE_CHECKING:
    from tasks.relay.providers import UpstreamError

RETRYABLE_CODES = ("upstream_error", "upstream_timeout")


def channels_serving(model: Model) -> list[Channel]:
    return list(model.channels.filter(enabled=True))


def channels_available(model: Model) -> list[Channel]:
    """Channels that could take a call for the model now, or as soon as their trial is due."""
    now = timezone.now()
    return [channel for channel in channels_serving(model) if _may_take(channel, now)]


def _may_take(channel: Channel, now) -> bool:
    if channel.circuit_state == Channel.Circuit.CLOSED:
        return True
    if channel.circuit_state == Channel.Circuit.OPEN:
        return channel.circuit_open_until is None or channel.circuit_open_until <= now
    return _trial_is_stale(channel, now)


def _trial_is_stale(channel: Channel, now) -> bool:
    """A half-open channel whose trial outlived any call's timeout: its worker died; let another try."""
    changed = channel.circuit_changed_at
    return changed is None or changed < now - timedelta(seconds=channel.timeout + 30)


def attempt_start(
    *, task: Task, exclude: set[int], channels: list[Channel] | None = None
) -> tuple[TaskAttempt | None, bool]:
    """Open an attempt for the task on the best channel it has not tried yet, among `channels` (the
    claim's snapshot of those serving the model) or, without them, the channels read now.

    Returns (attempt, False), or (None, busy): busy is True when some channel could serve but all of them
    are at their max concurrency right now, so waiting may help."""
    now = timezone.now()
    serving = channels_serving(task.catalog_model) if channels is None else channels
    candidates = [c for c in serving if c.id not in exclude and _may_take(c, now)]
    busy = False
    for priority in sorted({c.priority for c in candidates}, reverse=True):
        group = [c for c in candidates if c.priority == priority]
        while group:
            channel = random.choices(group, weights=[c.weight for c in group])[0]
            group.remove(channel)
            if channel.max_concurrency is None and channel.circuit_state == Channel.Circuit.CLOSED:
                return _attempt_insert(task, channel, now), False  # the common case: one statement
            with transaction.atomic():
                if channel.max_concurrency is not None:
                    # Attempts on one channel take turns here, so the in-flight count is exact.
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"channel:{channel.pk}"]
                        )
                    if _in_flight(channel, now) >= channel.max_concurrency:
                        busy = True
                        continue
                if channel.circuit_state != Channel.Circuit.CLOSED and not _claim_trial(channel, now):
                    continue
                return _attempt_insert(task, channel, now), False
    return None, busy


def _attempt_insert(task: Task, channel: Channel, now) -> TaskAttempt:
    """Insert the task's next attempt on the channel, numbered in the same statement."""
    with prepared_cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_taskattempt "
            "(task_id, channel_id, number, started_at, error_code, error_message) "
            # cast: bound apart, the id's type is deduced from its first use, a SELECT list (text)
            "SELECT %(task)s::varchar, %(channel)s, coalesce(max(number), 0) + 1, %(now)s, '', '' "
            "FROM tasks_taskattempt WHERE task_id = %(task)s RETURNING id, number",
            {"task": task.pk, "channel": channel.pk, "now": now},
        )
        pk, number = cursor.fetchone()
    attempt = TaskAttempt(pk=pk, task=task, channel=channel, number=number, started_at=now)
    attempt._state.adding = False
    attempt._state.db = connection.alias
    return attempt


def _in_flight(channel: Channel, now) -> int:
    return TaskAttempt.objects.filter(
        channel=channel,
        finished_at__isnull=True,
        started_at__gt=now - timedelta(seconds=channel.timeout + 30),
    ).count()


def _claim_trial(channel: Channel, now) -> bool:
    """Win the one trial call of a cooled-down channel, or learn that another worker has it."""
    due = Q(circuit_state=Channel.Circuit.OPEN) & (
        Q(circuit_open_until__isnull=True) | Q(circuit_open_until__lte=now)
    )
    stale = Q(circuit_state=Channel.Circuit.HALF_OPEN) & (
        Q(circuit_changed_at__isnull=True)
        | Q(circuit_changed_at__lt=now - timedelta(seconds=channel.timeout + 30))
    )
    return bool(
        Channel.objects.filter(due | stale, pk=channel.pk).update(
            circuit_state=Channel.Circuit.HALF_OPEN, circuit_changed_at=now
        )
    )


def breaker_failure(channel: Channel, error: "UpstreamError") -> None:
    """Record what a failed call says about the channel's health (the attempt is already saved)."""
    now = timezone.now()
    if error.auth_failure:
        Channel.objects.filter(pk=channel.pk).update(
            enabled=False, disabled_reason=f"{now:%Y-%m-%d %H:%M:%S} UTC: {error.message}"[:2000]
        )
        return
    if not error.retryable:
        return  # the request's fault (400, 422, content filter), not the channel's
    cooldown = timedelta(seconds=settings.BREAKER_COOLDOWN_SECONDS)
    if error.http_status == 429 and error.retry_after:
        _open(
            channel,
            now,
            max(cooldown, timedelta(seconds=error.retry_after)),
            f"429, Retry-After {error.retry_after:g}s",
        )
        return
    if Channel.objects.filter(pk=channel.pk, circuit_state=Channel.Circuit.HALF_OPEN).exists():
        _open(channel, now, cooldown, f"trial call failed: {error.message}")
        return
    window = TaskAttempt.objects.filter(
        channel=channel,
        started_at__gte=now - timedelta(seconds=settings.BREAKER_WINDOW_SECONDS),
        finished_at__isnull=False,
    )
    calls = window.count()
    failures = window.filter(error_code__in=RETRYABLE_CODES).count()
    if calls >= settings.BREAKER_MIN_REQUESTS and failures >= settings.BREAKER_ERROR_RATE * calls:
        window_text = f"{failures} of {calls} calls failed in {settings.BREAKER_WINDOW_SECONDS}s"
        _open(channel, now, cooldown, f"{window_text}; last: {error.message}")


def _open(channel: Channel, now, cooldown: timedelta, reason: str) -> None:
    Channel.objects.filter(pk=channel.pk).update(
        circuit_state=Channel.Circuit.OPEN,
        # never shorten a cooldown already running (a longer Retry-After wins); GREATEST skips NULL
        circuit_open_until=Greatest("circuit_open_until", Value(now + cooldown)),
        circuit_reason=reason[:2000],
        circuit_changed_at=now,
    )
