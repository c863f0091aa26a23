"""Requests per minute, tokens per minute and concurrent tasks, per key and per tenant.

The counts live in PostgreSQL, the one thing every web process shares, so a limit means the same
whether one process or ten serve a key. Each scope (a key, a tenant) is checked under a transaction-level
advisory lock, so two admissions for the same scope take turns: the count one of them reads always
includes the other's request. The window slides: a request is admitted while fewer than `rpm` requests
(and fewer than `tpm` tokens) were admitted in the 60 seconds before it.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import DateTimeField, Func
from django.utils import timezone

from foxgate.errors import ApiError
from tenants.models import ApiKey, RateEvent, Spending, Tenant

WINDOW = timedelta(seconds=60)


class RateLimited(ApiError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, code: str, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(message, code=code)
        self.headers = {"Retry-After": str(retry_after), **headers}


@dataclass(frozen=True)
class Scope:
    name: str  # "key:<id>" / "tenant:<id>", the RateEvent scope and the lock name
    label: str  # for messages: "this key" / "the tenant"
    owner: Spending


def scopes_of(api_key: ApiKey) -> list[Scope]:
    return [
        Scope(f"key:{api_key.pk}", "this key", api_key),
        Scope(f"tenant:{api_key.tenant_id}", "the tenant", api_key.tenant),
    ]


def limits_apply(*, api_key: ApiKey) -> bool:
    """Whether the key or its tenant has a limit that admission must check (in a transaction)."""
    return any(_limited(scope.owner) for scope in scopes_of(api_key))


def _limited(limits: Spending) -> bool:
    return limits.rpm is not None or limits.tpm is not None or limits.max_concurrency is not None


def limits_admit(*, api_key: ApiKey, tokens: int) -> dict[str, str]:
    """Check every limit of the key and its tenant for one more request of `tokens` tokens, or raise 429.

    Call inside the admission transaction, before the task is inserted, then `limits_record` once it is.
    Returns the X-RateLimit-* headers for the tightest requests-per-minute limit (none if no rpm is set)."""
    candidates: list[dict[str, str]] = []
    with connection.cursor() as cursor:
        for scope in scopes_of(api_key):
            limits = scope.owner
            if not _limited(limits):
                continue
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [scope.name])
            if limits.max_concurrency is not None:
                running = _unfinished_tasks(scope)
                if running >= limits.max_concurrency:
                    raise RateLimited(
                        f"Concurrency limit: {scope.label} already has {running} tasks running "
                        f"(limit {limits.max_concurrency}).",
                        code="concurrency_limit_exceeded",
                        retry_after=1,
                        headers={},
                    )
            if limits.rpm is None and limits.tpm is None:
                continue
            cursor.execute(
                "SELECT count(*), coalesce(sum(tokens), 0), min(at), clock_timestamp() "
                "FROM tenants_rateevent WHERE scope = %s AND at > clock_timestamp() - %s",
                [scope.name, WINDOW],
            )
            requests, used_tokens, oldest, now = cursor.fetchone()
            reset = math.ceil(((oldest + WINDOW - now) if oldest else WINDOW).total_seconds())
            if limits.rpm is not None:
                scope_headers = {
                    "X-RateLimit-Limit": str(limits.rpm),
                    "X-RateLimit-Remaining": str(max(0, limits.rpm - requests - 1)),
                    "X-RateLimit-Reset": str(reset),
                }
                if requests >= limits.rpm:
                    raise RateLimited(
                        f"Rate limit: {scope.label} may make {limits.rpm} requests per minute.",
                        code="rate_limit_exceeded",
                        retry_after=reset,
                        headers=scope_headers | {"X-RateLimit-Remaining": "0"},
                    )
                candidates.append(scope_headers)
            if limits.tpm is not None and used_tokens + tokens > limits.tpm:
                raise RateLimited(
                    f"Token limit: {scope.label} may use {limits.tpm} tokens per minute; "
                    f"{used_tokens} are used and this request may need {tokens}.",
                    code="token_limit_exceeded",
                    retry_after=reset,
                    headers={},
                )
    return min(candidates, key=lambda h: int(h["X-RateLimit-Remaining"]), default={})


def limits_record(*, api_key: ApiKey, task, tokens: int) -> None:
    """Count an admitted task in the windows of the scopes that have per-minute limits."""
    for scope in scopes_of(api_key):
        if scope.owner.rpm is not None or scope.owner.tpm is not None:
            # The database's clock, as the window query uses: every process agrees on one clock.
            RateEvent.objects.create(scope=scope.name, at=ClockTimestamp(), tokens=tokens, task=task)


# Replaces the admission estimate with the tokens the task really used: a CTE of the settling statement
# (tasks/settle.py), acting on the rate events of the task row in its CTE `settled`.
LIMITS_SETTLE = """
settle_rates AS (
    UPDATE tenants_rateevent r SET tokens = %(settle_tokens)s FROM settled g WHERE r.task_id = g.id
    RETURNING 1
)"""


def limits_settle(*, tokens: int) -> dict[str, int]:
    """The parameters of LIMITS_SETTLE."""
    return {"settle_tokens": tokens}


def rate_events_prune() -> int:
    """Drop events older than the window; run on schedule."""
    deleted, _ = RateEvent.objects.filter(at__lt=timezone.now() - WINDOW).delete()
    return deleted


class ClockTimestamp(Func):
    template = "clock_timestamp()"
    output_field = DateTimeField()


def _unfinished_tasks(scope: Scope) -> int:
    from tasks.models import Task

    field = "api_key" if isinstance(scope.owner, ApiKey) else "tenant"
    assert isinstance(scope.owner, ApiKey | Tenant)
    return Task.objects.filter(**{field: scope.owner}, status__in=Task.UNFINISHED).count()
