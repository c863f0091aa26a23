"""Numbers for the usage and failures dashboards, read from the usage rollup only."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from tasks.models import AttributedUsage, UsageRollup
from tenants.access import Perm, is_platform, scope

DAYS = 30
FAILURE_DAYS = 7
TOP = 10


def _rollups(user, perm: Perm) -> QuerySet:
    """Spend is money (`money`); failure counts are for every role that reads tasks (`read`)."""
    return scope(UsageRollup.objects.all(), user, perm)


def _bars(rows: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    """Rows with a `share` in percent of the largest, for CSS bar charts."""
    peak = max((row[value] or 0 for row in rows), default=0) or 1
    return [{**row, "share": round(100 * (row[value] or 0) / peak)} for row in rows]


def usage_dashboard(user) -> dict[str, Any]:
    since = timezone.now().date() - timedelta(days=DAYS - 1)
    recent = _rollups(user, Perm.MONEY).filter(day__gte=since)
    daily = recent.values("day").annotate(task_count=Sum("tasks"), spent=Sum("credits"))
    per_day = {row["day"]: row for row in daily}
    calendar = [since + timedelta(days=n) for n in range(DAYS)]
    days = [per_day.get(day, {"day": day, "task_count": 0, "spent": 0}) for day in calendar]

    def top(field: str, label: str) -> list[dict[str, Any]]:
        rows = (
            recent.values(field, label)
            .annotate(
                task_count=Sum("tasks"),
                spent=Sum("credits"),
                tokens=Sum("prompt_tokens") + Sum("completion_tokens"),
            )
            .order_by("-spent")[:TOP]
        )
        return _bars([{**row, "name": row[label]} for row in rows], "spent")

    totals = recent.aggregate(
        task_count=Sum("tasks"), spent=Sum("credits"), failed=Sum("tasks", filter=Q(status="failed"))
    )
    attributed = scope(AttributedUsage.objects.filter(day__gte=since), user, Perm.MONEY)
    return {
        "days": _bars(days, "spent"),
        "by_model": top("model", "model"),
        "by_key": top("api_key", "api_key__key_id"),
        "by_tenant": top("tenant", "tenant__slug") if is_platform(user) else [],
        "by_tag": _attributed(attributed.filter(kind=AttributedUsage.Kind.TAG), is_platform(user)),
        "by_end_user": _attributed(attributed.filter(kind=AttributedUsage.Kind.USER), is_platform(user)),
        "totals": {k: v or Decimal(0) for k, v in totals.items()},
        "since": since,
    }


def _attributed(rows: QuerySet, platform: bool) -> list[dict[str, Any]]:
    """The top spenders among tags (`key=value`) or end users, each of a tenant; staff see which."""
    top = (
        rows.values("tenant__slug", "tag", "value")
        .annotate(task_count=Sum("tasks"), spent=Sum("credits"))
        .order_by("-spent", "tag", "value")[:TOP]
    )
    return _bars(
        [
            {
                **row,
                "name": (f"{row['tenant__slug']}: " if platform else "")
                + (f"{row['tag']}={row['value']}" if row["tag"] else row["value"]),
            }
            for row in top
        ],
        "spent",
    )


def failures_dashboard(user) -> dict[str, Any]:
    since: date = timezone.now().date() - timedelta(days=FAILURE_DAYS - 1)
    failed = _rollups(user, Perm.READ).filter(day__gte=since, status="failed")
    # Which channel failed is the platform's to know (tasks/admin.py platform_only_removed).
    grouping = ("error_code", "model", "channel__name") if is_platform(user) else ("error_code", "model")
    groups = failed.values(*grouping).annotate(task_count=Sum("tasks")).order_by("-task_count")[:50]
    per_day = {
        (row["day"], row["error_code"]): row["task_count"]
        for row in failed.values("day", "error_code").annotate(task_count=Sum("tasks"))
    }
    codes = sorted({code for _, code in per_day})
    days = [since + timedelta(days=n) for n in range(FAILURE_DAYS)]
    return {
        "groups": _bars(list(groups), "task_count"),
        "codes": codes,
        "timeline": [{"day": day, "counts": [per_day.get((day, code), 0) for code in codes]} for day in days],
        "since": since,
        "by_channel": is_platform(user),
    }
