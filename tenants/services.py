"""Writes on tenants, keys and credits. Every credit movement goes through here and leaves a ledger line;
every change to keys, limits, budgets and balances leaves an audit event."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from foxgate.errors import InsufficientQuota
from tenants.models import KEY_PREFIX, ApiKey, AuditEvent, LedgerEntry, Spending, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the whole `sk-...` token; shown once, stored nowhere


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit log: a user name or cli/system, and where it came from."""

    name: str
    source: str = ""


SYSTEM = Actor("system")


def audit_record(
    *,
    actor: Actor,
    action: str,
    tenant: Tenant | None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.name,
        source=actor.source,
        action=action,
        tenant=tenant,
        target=target,
        details=details or {},
    )


def tenant_create(
    *, slug: str, name: str = "", credits: Decimal = Decimal(0), actor: Actor = SYSTEM
) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.create(slug=slug, name=name or slug)
        audit_record(actor=actor, action="tenant.create", tenant=tenant, target=f"tenant {slug}")
        if credits:
            credits_topup(tenant=tenant, amount=credits, memo="initial credits", actor=actor)
    tenant.refresh_from_db()
    return tenant


LIMIT_FIELDS = ("rpm", "tpm", "max_concurrency", "budget", "budget_period")


def apikey_issue(
    *,
    tenant: Tenant,
    name: str = "",
    allowed_models: list[str] | None = None,
    allowed_ips: list[str] | None = None,
    expires_at: datetime | None = None,
    actor: Actor = SYSTEM,
    **limits: Any,
) -> IssuedKey:
    """A new key. `limits` are any of rpm, tpm, max_concurrency, budget and budget_period."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown key limits: {', '.join(sorted(unknown))}")
    secret = ApiKey.new_secret()
    api_key = ApiKey(
        tenant=tenant,
        key_id=ApiKey.new_key_id(),
        name=name,
        allowed_models=allowed_models or [],
        allowed_ips=allowed_ips or [],
        expires_at=expires_at,
        **{field: value for field, value in limits.items() if value is not None},
    )
    api_key.set_secret(secret)
    with transaction.atomic():
        api_key.save()
        audit_record(
            actor=actor,
            action="key.issue",
            tenant=tenant,
            target=f"key {api_key.key_id}",
            details=_key_settings(api_key),
        )
    return IssuedKey(api_key=api_key, secret=f"{KEY_PREFIX}{api_key.key_id}{secret}")


def apikey_revoke(*, api_key: ApiKey, actor: Actor = SYSTEM) -> None:
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit_record(actor=actor, action="key.revoke", tenant=api_key.tenant, target=f"key {api_key.key_id}")


def apikey_rotate(*, api_key: ApiKey, grace: timedelta, actor: Actor = SYSTEM) -> IssuedKey:
    """A new secret for the key; the old one keeps working for `grace`, then stops."""
    secret = ApiKey.new_secret()
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        api_key.set_secret(secret, grace_until=timezone.now() + grace)
        api_key.save(
            update_fields=[
                "digest",
                "pepper_id",
                "previous_digest",
                "previous_pepper_id",
                "previous_expires_at",
            ]
        )
        audit_record(
            actor=actor,
            action="key.rotate",
            tenant=api_key.tenant,
            target=f"key {api_key.key_id}",
            details={"grace_seconds": grace.total_seconds()},
        )
    return IssuedKey(api_key=api_key, secret=f"{KEY_PREFIX}{api_key.key_id}{secret}")


def limits_set(*, target: Spending, actor: Actor = SYSTEM, **limits: Any) -> None:
    """Change a tenant's or key's limits and budget; None clears a limit."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
    tenant = target if isinstance(target, Tenant) else target.tenant
    name = f"tenant {tenant.slug}" if isinstance(target, Tenant) else f"key {target.key_id}"
    with transaction.atomic():
        type(target).objects.filter(pk=target.pk).update(**limits)
        for field, value in limits.items():
            setattr(target, field, value)
        audit_record(actor=actor, action="limits.set", tenant=tenant, target=name, details=_jsonable(limits))


def _key_settings(api_key: ApiKey) -> dict[str, Any]:
    settings = {field: getattr(api_key, field) for field in LIMIT_FIELDS}
    settings |= {
        "allowed_models": api_key.allowed_models,
        "allowed_ips": api_key.allowed_ips,
        "expires_at": api_key.expires_at,
    }
    return _jsonable(settings)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal | datetime) else v) for k, v in values.items()}


def credits_topup(*, tenant: Tenant, amount: Decimal, memo: str = "", actor: Actor = SYSTEM) -> LedgerEntry:
    """Add credits (or, with a negative amount and kind adjustment, correct them)."""
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(balance=F("balance") + amount)
        entry = LedgerEntry.objects.create(
            tenant=tenant, kind=LedgerEntry.Kind.TOPUP, amount=amount, memo=memo
        )
        audit_record(
            actor=actor,
            action="credits.topup",
            tenant=tenant,
            target=f"tenant {tenant.slug}",
            details={"amount": str(amount), "memo": memo, "ledger_entry": entry.pk},
        )
    return entry


ADJECTIVES = {Spending.Period.DAY: "daily", Spending.Period.MONTH: "monthly"}


def _fits_budget(amount: Decimal) -> Q:
    """Rows whose budget (if any) still has room for `amount` beside what is spent and held."""
    return Q(budget__isnull=True) | Q(budget__gte=F("period_spend") + F("held") + amount)


def credits_hold(*, task) -> LedgerEntry:
    """Set the task's worst-case cost aside on its tenant and its key, or refuse with 402.

    Each is one conditional UPDATE: the row changes only if the balance and budgets still have room, so
    concurrent holds from any number of processes can never overdraw. Call inside the transaction that
    inserts the task; a refusal rolls the whole admission back."""
    amount = task.credits_reserved
    tenants = Tenant.objects.filter(pk=task.tenant_id)
    if not tenants.filter(_fits_budget(amount), balance__gte=F("held") + amount).update(
        held=F("held") + amount
    ):
        tenant = tenants.get()
        if tenant.balance < tenant.held + amount:
            raise InsufficientQuota(
                f"Insufficient balance: this request may cost up to {amount} credits and the tenant has "
                f"{tenant.available} available."
            )
        raise InsufficientQuota(
            f"The tenant's {ADJECTIVES[tenant.budget_period]} budget of {tenant.budget} credits has no room "
            f"for a request that may cost up to {amount}.",
            code="budget_exceeded",
        )
    keys = ApiKey.objects.filter(pk=task.api_key_id)
    if not keys.filter(_fits_budget(amount)).update(held=F("held") + amount):
        key = keys.get()
        raise InsufficientQuota(
            f"This key's {ADJECTIVES[key.budget_period]} budget of {key.budget} credits has no room "
            f"for a request that may cost up to {amount}.",
            code="budget_exceeded",
        )
    return LedgerEntry.objects.create(
        tenant_id=task.tenant_id,
        api_key_id=task.api_key_id,
        task=task,
        price_id=task.price_id,
        kind=LedgerEntry.Kind.HOLD,
        held_change=amount,
    )


def credits_settle(*, task, cost: Decimal, basis: str) -> None:
    """Charge `cost` for the task and give back the rest of its hold (all of it when cost is zero).

    Idempotent: a task is settled once, whatever redelivery or retry calls this again. The actual cost is
    charged even when it exceeds the estimate that was held, so usage is never under-billed. `basis`
    records what the cost was computed from. Call inside a transaction that has locked the task row."""
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
            kind=LedgerEntry.Kind.CAPTURE, amount=-cost, held_change=-captured_from_hold, memo=basis, **line
        )
    if reserved - captured_from_hold:
        LedgerEntry.objects.create(
            kind=LedgerEntry.Kind.RELEASE, held_change=-(reserved - captured_from_hold), **line
        )
    spent = {"held": F("held") - reserved, "period_spend": F("period_spend") + cost}
    Tenant.objects.filter(pk=task.tenant_id).update(balance=F("balance") - cost, **spent)
    ApiKey.objects.filter(pk=task.api_key_id).update(**spent)
    task.credits_charged = cost
    task.charge_basis = basis


def period_start(period: str, now: datetime | None = None) -> datetime:
    """When the current budget period began: midnight UTC today, or the first of the month."""
    now = now or timezone.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == Spending.Period.DAY else day.replace(day=1)


def budgets_reset(*, now: datetime | None = None) -> int:
    """Start a new budget period for every tenant and key whose period has ended. Run on schedule."""
    now = now or timezone.now()
    reset = 0
    for model in (Tenant, ApiKey):
        for period in Spending.Period.values:
            start = period_start(period, now)
            reset += model.objects.filter(budget_period=period, period_started_at__lt=start).update(
                period_spend=Decimal(0), period_started_at=start
            )
    return reset
