"""Reads of tenants and credits."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from tenants.models import ApiKey, LedgerEntry


def period_start(now: datetime | None = None) -> datetime:
    """Start of the current spending period: the calendar month, in UTC."""
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def credits_summary(*, api_key: ApiKey) -> dict[str, Any]:
    tenant = api_key.tenant
    tenant.refresh_from_db(fields=["balance", "held"])
    start = period_start()
    captures = LedgerEntry.objects.for_tenant(tenant).filter(
        kind=LedgerEntry.Kind.CAPTURE, created_at__gte=start
    )
    return {
        "object": "account.credits",
        "tenant": {
            "balance": format_credits(tenant.balance),
            "held": format_credits(tenant.held),
            "available": format_credits(tenant.available),
            "user_group": tenant.group,
            "period_start": start.isoformat(),
            "spend": format_credits(_spent(captures)),
            "budget": None,
        },
        "key": {
            "id": api_key.key_id,
            "name": api_key.name,
            "period_start": start.isoformat(),
            "spend": format_credits(_spent(captures.filter(api_key=api_key))),
            "budget": None,
        },
    }


def _spent(captures) -> Decimal:
    return -(captures.aggregate(total=Sum("amount"))["total"] or Decimal(0))


def format_credits(amount: Decimal) -> str:
    """Credits as the API shows them: a decimal string without trailing zeros."""
    return format(amount.normalize(), "f")
