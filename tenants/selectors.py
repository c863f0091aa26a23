"""Reads of tenants and credits."""

from decimal import Decimal
from typing import Any

from tenants.models import ApiKey, Spending


def format_credits(amount: Decimal) -> str:
    """Credits as the API shows them: a decimal string without trailing zeros."""
    return format(amount.normalize(), "f")


def credits_summary(*, api_key: ApiKey) -> dict[str, Any]:
    """The key's tenant and the key itself: what is held, spent this period, and the budgets."""
    api_key = ApiKey.objects.select_related("tenant").get(pk=api_key.pk)  # fresh counters, not a cached key
    tenant = api_key.tenant
    return {
        "object": "account.credits",
        "tenant": {
            "balance": format_credits(tenant.balance),
            "available": format_credits(tenant.available),
            "user_group": tenant.group,
            **_spending(tenant),
        },
        "key": {"id": api_key.key_id, "name": api_key.name, **_spending(api_key)},
    }


def _spending(owner: Spending) -> dict[str, Any]:
    return {
        "held": format_credits(owner.held),
        "period": owner.budget_period,
        "period_start": owner.period_started_at.isoformat(),
        "spend": format_credits(owner.period_spend),
        "budget": None if owner.budget is None else format_credits(owner.budget),
    }
