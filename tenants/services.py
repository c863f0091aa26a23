"""Writes on tenants, keys and credits. Every credit movement goes through here and leaves a ledger line."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F

from foxgate.errors import InsufficientQuota
from tenants.models import KEY_PREFIX, ApiKey, LedgerEntry, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the whole `sk-...` token; shown once, stored nowhere


def tenant_create(*, slug: str, name: str = "", credits: Decimal = Decimal(0)) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.create(slug=slug, name=name or slug)
        if credits:
            credits_topup(tenant=tenant, amount=credits, memo="initial credits")
    tenant.refresh_from_db()
    return tenant


def apikey_issue(*, tenant: Tenant, name: str = "") -> IssuedKey:
    secret = ApiKey.new_secret()
    api_key = ApiKey(tenant=tenant, key_id=ApiKey.new_key_id(), name=name)
    api_key.set_secret(secret)
    api_key.save()
    return IssuedKey(api_key=api_key, secret=f"{KEY_PREFIX}{api_key.key_id}{secret}")


def credits_topup(*, tenant: Tenant, amount: Decimal, memo: str = "") -> LedgerEntry:
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(balance=F("balance") + amount)
        return LedgerEntry.objects.create(
            tenant=tenant, kind=LedgerEntry.Kind.TOPUP, amount=amount, memo=memo
        )


def credits_hold(*, task) -> LedgerEntry:
    """Set the task's worst-case cost aside, or refuse.

    One conditional update, so concurrent holds can never take the tenant's spendable credits below
    zero. Call inside the transaction that inserts the task."""
    amount = task.credits_reserved
    held = Tenant.objects.filter(pk=task.tenant_id, balance__gte=F("held") + amount).update(
        held=F("held") + amount
    )
    if not held:
        raise InsufficientQuota(
            f"Insufficient balance: this request may cost up to {amount} credits, "
            "more than the tenant has available."
        )
    return LedgerEntry.objects.create(
        tenant_id=task.tenant_id,
        api_key_id=task.api_key_id,
        task=task,
        price_id=task.price_id,
        kind=LedgerEntry.Kind.HOLD,
        held_change=amount,
    )


def credits_settle(*, task, cost: Decimal) -> None:
    """Spend `cost` of the task's hold and give back the rest (all of it when cost is zero).

    Idempotent: a task is settled once, whatever redelivery or retry calls this again. The actual cost
    is charged even when it exceeds the estimate that was held, so usage is never under-billed.
    Call inside a transaction that has locked the task row.
    """
    if LedgerEntry.objects.filter(
        task=task, kind__in=[LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.RELEASE]
    ).exists():
        return
    reserved = task.credits_reserved
    captured_from_hold = min(cost, reserved)
    line = {
        "tenant_id": task.tenant_id,
        "api_key_id": task.api_key_id,
        "task": task,
        "price_id": task.price_id,
    }
    if cost:
        LedgerEntry.objects.create(
            kind=LedgerEntry.Kind.CAPTURE, amount=-cost, held_change=-captured_from_hold, **line
        )
    if reserved - captured_from_hold:
        LedgerEntry.objects.create(
            kind=LedgerEntry.Kind.RELEASE, held_change=-(reserved - captured_from_hold), **line
        )
    Tenant.objects.filter(pk=task.tenant_id).update(balance=F("balance") - cost, held=F("held") - reserved)
    task.credits_charged = cost
