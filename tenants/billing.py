"""Finance's view: check that the books balance, and export what each task was charged.

The invariants, for every tenant and key and every task:
- a tenant's balance is the sum of its ledger's amounts, and its held credits the sum of its held changes;
- a key's held credits are the sum of the held changes of its lines;
- an end user's held credits are what its unfinished tasks reserved;
- a task has exactly one hold of its reserved credits; once finished, capture/release lines that return
  the whole hold and a capture equal to what the task says it was charged; nothing else.
"""

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from django.db import connection
from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from tenants.models import ApiKey, EndUserSpend, LedgerEntry, Tenant

ZERO = Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=6))
SETTLING = (LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.RELEASE)
TASK_KINDS = (LedgerEntry.Kind.HOLD, *SETTLING)


def _sum(field: str, condition: Q | None = None) -> Coalesce:
    return Coalesce(Sum(field, filter=condition), ZERO)


def billing_discrepancies(
    *, tenant: Tenant | None = None, since: datetime | None = None, until: datetime | None = None
) -> Iterator[str]:
    """Every way the books do not balance, as sentences naming the tenant, key or task."""
    tenants = Tenant.objects.all() if tenant is None else Tenant.objects.filter(pk=tenant.pk)
    for row in tenants.annotate(
        ledger_amount=_sum("ledger__amount"), ledger_held=_sum("ledger__held_change")
    ):
        if row.balance != row.ledger_amount:
            yield f"tenant {row.slug}: balance is {row.balance} but its ledger sums to {row.ledger_amount}"
        if row.held != row.ledger_held:
            yield f"tenant {row.slug}: held is {row.held} but its ledger's holds sum to {row.ledger_held}"

    held_by_key = dict(
        LedgerEntry.objects.filter(tenant__in=tenants, api_key__isnull=False)
        .values("api_key")
        .annotate(held=Sum("held_change"))
        .values_list("api_key", "held")
    )
    for key in ApiKey.objects.filter(tenant__in=tenants).only("key_id", "held"):
        ledger_held = held_by_key.get(key.pk, Decimal(0))
        if key.held != ledger_held:
            yield f"key {key.key_id}: held is {key.held} but its ledger lines hold {ledger_held}"

    yield from _end_user_discrepancies(tenants)
    for task in _task_ledgers(tenants, since, until):
        yield from _task_discrepancies(task)


def _end_user_discrepancies(tenants: QuerySet) -> Iterator[str]:
    """An end user holds what its unfinished tasks reserved (its tasks' ledger lines hold the same)."""
    from tasks.models import Task

    running = (
        Task.objects.filter(tenant__in=tenants, status__in=Task.UNFINISHED)
        .exclude(end_user="")
        .values("tenant", "end_user")
        .annotate(held=Sum("credits_reserved"))
    )
    reserved = {(row["tenant"], row["end_user"]): row["held"] for row in running}
    # the end users holding anything, or who should: not the many whose tasks are all done
    rows = EndUserSpend.objects.filter(tenant__in=tenants).filter(
        ~Q(held=0) | Q(end_user__in={end_user for _, end_user in reserved})
    )
    for spend in rows.select_related("tenant"):
        expected = reserved.get((spend.tenant_id, spend.end_user), Decimal(0))
        if spend.held != expected:
            yield (
                f"tenant {spend.tenant.slug}, end user {spend.end_user!r}: held is {spend.held} but its "
                f"running tasks reserved {expected}"
            )


def _task_ledgers(tenants: QuerySet, since: datetime | None, until: datetime | None) -> QuerySet:
    from tasks.models import Task

    tasks = Task.objects.filter(tenant__in=tenants)
    if since:
        tasks = tasks.filter(created_at__gte=since)
    if until:
        tasks = tasks.filter(created_at__lt=until)
    return tasks.annotate(
        holds=Count("ledger", filter=Q(ledger__kind=LedgerEntry.Kind.HOLD)),
        held=_sum("ledger__held_change", Q(ledger__kind=LedgerEntry.Kind.HOLD)),
        held_left=_sum("ledger__held_change"),
        captured=-_sum("ledger__amount", Q(ledger__kind=LedgerEntry.Kind.CAPTURE)),
        settles=Count("ledger", filter=Q(ledger__kind__in=SETTLING)),
        strays=Count("ledger", filter=~Q(ledger__kind__in=TASK_KINDS)),
        stray_amount=_sum("ledger__amount", ~Q(ledger__kind=LedgerEntry.Kind.CAPTURE)),
    ).order_by("created_at")


def _task_discrepancies(task) -> Iterator[str]:
    name = f"task {task.id}"
    if task.holds != 1:
        yield f"{name}: has {task.holds} hold lines, not 1"
    elif task.held != task.credits_reserved:
        yield f"{name}: reserved {task.credits_reserved} but its hold line holds {task.held}"
    if task.strays:
        yield f"{name}: has {task.strays} ledger lines of kinds other than hold, capture and release"
    if task.stray_amount:
        yield f"{name}: lines other than its capture move the balance by {task.stray_amount}"
    if not task.is_finished:
        if task.settles:
            yield f"{name}: is {task.status} but already has capture or release lines"
        return
    if task.held_left:
        yield f"{name}: is {task.status} but {task.held_left} credits are still held for it"
    if task.credits_charged is None:
        yield f"{name}: is {task.status} but records no charge"
    elif task.captured != task.credits_charged:
        yield f"{name}: charged {task.credits_charged} but its capture lines take {task.captured}"


CSV_COLUMNS = [
    "task_id",
    "tenant",
    "key_id",
    "model",
    "status",
    "created_at",
    "finished_at",
    "price_version",
    "prompt_tokens",
    "completion_tokens",
    "credits_reserved",
    "credits_charged",
    "charge_basis",
    "end_user",
    "tags",
]


def billing_csv(
    out: TextIO, *, tenant: Tenant | None = None, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Write one row per task created in the period; returns the number of rows."""
    from tasks.models import Task

    tasks = Task.objects.all() if tenant is None else Task.objects.for_tenant(tenant)
    if since:
        tasks = tasks.filter(created_at__gte=since)
    if until:
        tasks = tasks.filter(created_at__lt=until)
    rows = tasks.order_by("created_at").values_list(
        "id",
        "tenant__slug",
        "api_key__key_id",
        "model",
        "status",
        "created_at",
        "finished_at",
        "price__version",
        "result__usage__prompt_tokens",
        "result__usage__completion_tokens",
        "credits_reserved",
        "credits_charged",
        "charge_basis",
        "end_user",
        "tags",
    )
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in rows.iterator(chunk_size=2000):
        writer.writerow([csv_value(value) for value in row])
        count += 1
    return count


def csv_value(value: Any) -> Any:
    """A value as a CSV cell: None empty, tags (a dict) as JSON, anything else as it is."""
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


SPEND_BY = ("tag", "user")
# Spend per tag of the charged tasks carrying it, per tenant; a task with two tags counts in both.
SPEND_BY_TAG = """
SELECT tenant.slug, tag.key, tag.value, count(*), sum(task.credits_charged)
FROM tasks_task task JOIN tenants_tenant tenant ON tenant.id = task.tenant_id
    CROSS JOIN jsonb_each_text(task.tags) AS tag
WHERE task.tags <> '{}'::jsonb AND task.credits_charged IS NOT NULL
    AND (%(tenant)s::bigint IS NULL OR task.tenant_id = %(tenant)s)
    AND (%(since)s::timestamptz IS NULL OR task.created_at >= %(since)s)
    AND (%(until)s::timestamptz IS NULL OR task.created_at < %(until)s)
GROUP BY 1, 2, 3
ORDER BY 1, 5 DESC, 2, 3
"""


def spend_by(
    by: str, *, tenant: Tenant | None = None, since: datetime | None = None, until: datetime | None = None
) -> list[tuple[Any, ...]]:
    """(tenant slug, end user or tag key and value, tasks, credits) of the charged tasks of the period
    (created in it, as the CSV counts them) per end user (`by="user"`) or per tag (`by="tag"`)."""
    from tasks.models import Task

    if by == "tag":
        window = {"tenant": tenant and tenant.pk, "since": since, "until": until}
        with connection.cursor() as cursor:
            cursor.execute(SPEND_BY_TAG, window)
            return cursor.fetchall()
    tasks = Task.objects.exclude(end_user="").filter(credits_charged__isnull=False)
    if tenant is not None:
        tasks = tasks.filter(tenant=tenant)
    if since:
        tasks = tasks.filter(created_at__gte=since)
    if until:
        tasks = tasks.filter(created_at__lt=until)
    rows = (
        tasks.values("tenant__slug", "end_user")
        .annotate(tasks=Count("id"), credits=Sum("credits_charged"))
        .order_by("tenant__slug", "-credits", "end_user")
    )
    return [(r["tenant__slug"], r["end_user"], r["tasks"], r["credits"]) for r in rows]
