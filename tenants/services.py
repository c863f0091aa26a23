"""Writes on tenants, keys and credits. Every credit movement goes through here and leaves a ledger line;
every change to keys, limits, budgets and balances leaves an audit event."""

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.utils import timezone

from foxgate.database import insert_select, prepared_cursor
from foxgate.errors import InsufficientQuota
from tenants.models import (
    CREDITS,
    KEY_PREFIX,
    LIMIT_FIELDS,
    ApiKey,
    AuditEvent,
    EndUserSpend,
    LedgerEntry,
    Membership,
    ModelRuleOverride,
    Spending,
    Tenant,
)

if TYPE_CHECKING:
    from tasks.models import Task


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


def callback_secret(tenant: Tenant) -> str:
    """The secret that signs the tenant's task callbacks, made on first use (by whichever process gets
    there first: the conditional update keeps one)."""
    if not tenant.callback_secret_encrypted:
        made = Tenant(callback_secret=secrets.token_urlsafe(32))
        Tenant.objects.filter(pk=tenant.pk, callback_secret_encrypted="").update(
            callback_secret_encrypted=made.callback_secret_encrypted
        )
        tenant.refresh_from_db(fields=["callback_secret_encrypted"])
    return tenant.callback_secret


def tenant_create(
    *, slug: str, name: str = "", credits: Decimal = Decimal(0), actor: Actor = SYSTEM, **settings: Any
) -> Tenant:
    """A new tenant; `settings` are any of status, group and the limits."""
    refuse_unknown(settings, TENANT_FIELDS, "tenant settings")
    with transaction.atomic():
        tenant = Tenant.objects.create(slug=slug, name=name or slug, **settings)
        audit_record(
            actor=actor,
            action="tenant.create",
            tenant=tenant,
            target=f"tenant {slug}",
            details=_jsonable(settings),
        )
        if credits:
            credits_topup(tenant=tenant, amount=credits, memo="initial credits", actor=actor)
    tenant.refresh_from_db()
    return tenant


# What an operator may change on a tenant or a key. Money columns (balance, held, period_spend,
# period_started_at) are not among them: only the ledger services below move those.
TENANT_FIELDS = ("slug", "name", "status", "group", *LIMIT_FIELDS, "end_user_budget", "store_content")
KEY_FIELDS = ("name", "allowed_models", "allowed_ips", "expires_at", *LIMIT_FIELDS)


def row_update(
    *,
    instance: models.Model,
    actor: Actor,
    changes: dict[str, Any],
    allowed: tuple[str, ...],
    action: str,
    tenant: Tenant | None,
    target: str,
    check: Callable[[Any], None] | None = None,
    secret_fields: tuple[str, ...] = (),
    stored_as: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Change some columns of one row, and only those, with an AuditEvent of their before and after.

    The row is locked and re-read, so the diff is against what the database holds now, not against a copy
    loaded when a form was opened; fields whose value does not change are neither written nor audited,
    and an edit that changes nothing leaves no event. `check` sees the row as it would be and raises
    ValidationError to refuse. `secret_fields` are audited as "changed", never by value; `stored_as`
    maps a property (an encrypted key) to the column it writes. Updates `instance` in place and returns
    {field: new value} of what changed."""
    refuse_unknown(changes, allowed, "fields")
    with transaction.atomic():
        row = type(instance).objects.select_for_update(of=("self",)).get(pk=instance.pk)
        before = {field: getattr(row, field) for field in changes}
        for field, value in changes.items():
            setattr(row, field, value)
        if check is not None:
            check(row)
        changed = {field: getattr(row, field) for field in changes if getattr(row, field) != before[field]}
        if not changed:
            return {}
        columns = {(stored_as or {}).get(field, field) for field in changed}
        type(instance).objects.filter(pk=row.pk).update(**{c: getattr(row, c) for c in columns})
        audit_record(
            actor=actor,
            action=action,
            tenant=tenant,
            target=target,
            details={
                "before": _audited({f: before[f] for f in changed}, secret_fields),
                "after": _audited(changed, secret_fields),
            },
        )
    for field in changed:
        column = (stored_as or {}).get(field, field)
        setattr(instance, column, getattr(row, column))
    return changed


def _audited(values: dict[str, Any], secret_fields: tuple[str, ...]) -> dict[str, Any]:
    return _jsonable({f: ("changed" if f in secret_fields else v) for f, v in values.items()})


def refuse_unknown(given: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = set(given) - set(allowed)
    if unknown:
        raise TypeError(f"unknown {what}: {', '.join(sorted(unknown))}")


def tenant_update(*, tenant: Tenant, actor: Actor = SYSTEM, **changes: Any) -> dict[str, Any]:
    """Change a tenant's name, status, group or limits; see `row_update`. Suspending or reactivating is
    audited as tenant.suspend / tenant.activate. A limit below one of its live keys' is refused."""
    status = changes.get("status")
    action = {Tenant.Status.SUSPENDED: "tenant.suspend", Tenant.Status.ACTIVE: "tenant.activate"}.get(
        status, "tenant.update"
    )
    if status is not None and status == Tenant.objects.values_list("status", flat=True).get(pk=tenant.pk):
        action = "tenant.update"  # the status is not what this edit changes

    def check(row: Tenant) -> None:
        row.check_limits_cover_keys({f: changes[f] for f in changes if f in LIMIT_FIELDS})

    return row_update(
        instance=tenant,
        actor=actor,
        changes=changes,
        allowed=TENANT_FIELDS,
        action=action,
        tenant=tenant,
        target=f"tenant {tenant.slug}",
        check=check,
    )


def apikey_check(*, tenant: Tenant, values: dict[str, Any]) -> dict[str, Any]:
    """The rules a key's settings obey, wherever they are set (admin, command line, services): allow-lists
    that parse, limits within the tenant's. Returns the values as stored; raises ValidationError naming
    the field."""
    cleaned = dict(values)
    if "allowed_ips" in cleaned:
        cleaned["allowed_ips"] = ApiKey.clean_allowed_ips(cleaned["allowed_ips"] or [])
    if "allowed_models" in cleaned:
        cleaned["allowed_models"] = ApiKey.clean_allowed_models(cleaned["allowed_models"] or [])
    tenant.check_key_limits(cleaned)
    return cleaned


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
    """A new key. `limits` are any of rpm, tpm, max_concurrency, budget and budget_period; they must stay
    within the tenant's (ValidationError otherwise)."""
    refuse_unknown(limits, LIMIT_FIELDS, "key limits")
    secret = ApiKey.new_secret()
    with transaction.atomic():
        # Locked, so a concurrent lowering of the tenant's limits cannot slip between check and insert.
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        values = apikey_check(
            tenant=locked,
            values={
                "allowed_models": allowed_models or [],
                "allowed_ips": allowed_ips or [],
                **{field: value for field, value in limits.items() if value is not None},
            },
        )
        api_key = ApiKey(
            tenant=tenant, key_id=ApiKey.new_key_id(), name=name, expires_at=expires_at, **values
        )
        api_key.set_secret(secret)
        api_key.save()
        audit_record(
            actor=actor,
            action="key.issue",
            tenant=tenant,
            target=f"key {api_key.key_id}",
            details=_key_settings(api_key),
        )
    return IssuedKey(api_key=api_key, secret=f"{KEY_PREFIX}{api_key.key_id}{secret}")


def apikey_update(*, api_key: ApiKey, actor: Actor = SYSTEM, **changes: Any) -> dict[str, Any]:
    """Change a key's name, allow-lists, expiry or limits; see `row_update` and `apikey_check`."""
    with transaction.atomic():
        # The tenant row first, in the order holds and settlements take it, so this cannot deadlock.
        tenant = Tenant.objects.select_for_update().get(pk=api_key.tenant_id)
        changes = apikey_check(tenant=tenant, values=changes)

        def check(row: ApiKey) -> None:
            tenant.check_key_limits({field: getattr(row, field) for field in LIMIT_FIELDS})

        return row_update(
            instance=api_key,
            actor=actor,
            changes=changes,
            allowed=KEY_FIELDS,
            action="key.update",
            tenant=tenant,
            target=f"key {api_key.key_id}",
            check=check,
        )


def apikey_revoke(*, api_key: ApiKey, actor: Actor = SYSTEM) -> bool:
    """Revoke the key; False (and no audit event) when it already was."""
    with transaction.atomic():
        if not ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        ):
            return False
        audit_record(actor=actor, action="key.revoke", tenant=api_key.tenant, target=f"key {api_key.key_id}")
    return True


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


def limits_set(*, target: Spending, actor: Actor = SYSTEM, **limits: Any) -> dict[str, Any]:
    """Change a tenant's or key's limits and budget; None clears a limit. The rules of
    `tenant_update` and `apikey_update` apply."""
    refuse_unknown(limits, LIMIT_FIELDS, "limits")
    if isinstance(target, Tenant):
        return tenant_update(tenant=target, actor=actor, **limits)
    assert isinstance(target, ApiKey)
    return apikey_update(api_key=target, actor=actor, **limits)


def membership_add(*, user: Any, tenant: Tenant, role: str, actor: Actor = SYSTEM) -> Membership:
    with transaction.atomic():
        membership = Membership.objects.create(user=user, tenant=tenant, role=role)
        audit_record(
            actor=actor,
            action="member.add",
            tenant=tenant,
            target=f"user {user.get_username()}",
            details={"role": role},
        )
    return membership


def membership_update(*, membership: Membership, actor: Actor = SYSTEM, **changes: Any) -> dict[str, Any]:
    """Change a member's role (or move the membership to another user or tenant)."""
    return row_update(
        instance=membership,
        actor=actor,
        changes=changes,
        allowed=("user", "tenant", "role"),
        action="member.update",
        tenant=changes.get("tenant", membership.tenant),
        target=f"user {membership.user.get_username()}",
    )


def membership_remove(*, membership: Membership, actor: Actor = SYSTEM) -> None:
    """Take a user's role in a tenant away."""
    with transaction.atomic():
        membership.delete()
        audit_record(
            actor=actor,
            action="member.remove",
            tenant=membership.tenant,
            target=f"user {membership.user.get_username()}",
            details={"role": membership.role},
        )


OVERRIDE_FIELDS = ("model_pattern", "disabled", "max_images", "max_output_tokens", "reasoning")


def override_add(
    *, tenant: Tenant, model_pattern: str, actor: Actor = SYSTEM, **rules: Any
) -> ModelRuleOverride:
    """A tenant's own rule for a model or family; ModelRuleOverride.clean says what it may not ask."""
    refuse_unknown(rules, OVERRIDE_FIELDS, "override rules")
    override = ModelRuleOverride(tenant=tenant, model_pattern=model_pattern, **rules)
    override.clean()
    with transaction.atomic():
        override.save()
        audit_record(
            actor=actor,
            action="override.add",
            tenant=tenant,
            target=f"override {model_pattern}",
            details=_jsonable({"model_pattern": model_pattern, **rules}),
        )
    return override


def override_update(*, override: ModelRuleOverride, actor: Actor = SYSTEM, **changes: Any) -> dict[str, Any]:
    return row_update(
        instance=override,
        actor=actor,
        changes=changes,
        allowed=OVERRIDE_FIELDS,
        action="override.update",
        tenant=override.tenant,
        target=f"override {override.model_pattern}",
        check=lambda row: row.clean(),
    )


def _key_settings(api_key: ApiKey) -> dict[str, Any]:
    settings = {field: getattr(api_key, field) for field in LIMIT_FIELDS}
    settings |= {
        "allowed_models": api_key.allowed_models,
        "allowed_ips": api_key.allowed_ips,
        "expires_at": api_key.expires_at,
    }
    return _jsonable(settings)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable_value(v) for k, v in values.items()}


def _jsonable_value(value: Any) -> Any:
    if isinstance(value, Decimal | datetime):
        return str(value)
    if isinstance(value, models.Model):
        return str(value)
    return value


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


HOLD_ATTEMPTS = 3  # a refusal that a re-read cannot explain (room freed meanwhile) is tried again

# A row to insert with the task, and SQL for columns the database must fill (the queue lock's now()).
Alongside = tuple[models.Model, dict[str, str]]


def credits_hold(*, task: "Task", alongside: Sequence[Alongside] = ()) -> None:
    """Insert the task with its worst-case cost set aside on its tenant and its key, its HOLD ledger line
    and the `alongside` rows (its queue job), all in one statement; or refuse with 402 and write nothing.

    The holds are the same conditional UPDATEs as ever (a row changes only if the balance and budgets
    still have room), so concurrent holds from any number of processes can never overdraw; the inserts
    happen only if both holds did. One statement is atomic on its own: outside a transaction it commits
    by itself, one round trip for the whole admission, and the tenant's row is locked only while the
    statement runs, not until a later COMMIT (the lock every submit of a tenant queued on). Inside one
    (limits), it is part of the caller's transaction, behind a savepoint so that a refusal leaves that
    transaction usable."""
    sql, params = _hold_statement(task, alongside)
    for _ in range(HOLD_ATTEMPTS):
        if _hold_inserted(sql, params):
            task._state.adding = False
            task._state.db = connection.alias
            return
        refusal = _hold_refusal(task)
        if refusal is not None:
            raise refusal
    raise InsufficientQuota(
        f"Insufficient balance: this request may cost up to {task.credits_reserved} credits."
    )


# Lock order as everywhere else: the tenant's row, then the key's, then the end user's. The task's row
# names the key whose hold succeeded, `(SELECT id FROM key_hold)`: when the tenant's hold succeeded and
# the key's did not (its budget is full), that is NULL, and the NOT NULL column fails the whole statement,
# the tenant's hold with it; a statement cannot otherwise take back the part of it that already ran. A
# task naming an end user names it the same way, `(SELECT end_user FROM end_user_hold)`.
HOLD = """
    WITH tenant_hold AS (
        UPDATE tenants_tenant SET held = held + %s
        WHERE id = %s AND balance >= held + %s AND (budget IS NULL OR budget >= period_spend + held + %s)
        RETURNING id
    ), key_hold AS (
        UPDATE tenants_apikey SET held = held + %s
        WHERE id = %s AND (budget IS NULL OR budget >= period_spend + held + %s)
          AND EXISTS (SELECT FROM tenant_hold)
        RETURNING id
    ){end_user}, task_row AS ({task} RETURNING 1){rows}
    SELECT count(*) FROM task_row
"""
# The end user's row is made by its first request; the budget is the tenant's end_user_budget.
END_USER_HOLD = """, end_user_hold AS (
        INSERT INTO tenants_enduserspend AS u (tenant_id, end_user, held, period_spend, period_started_at)
        SELECT %s, %s, %s, 0, %s FROM key_hold WHERE %s::numeric IS NULL OR %s::numeric >= %s
        ON CONFLICT (tenant_id, end_user) DO UPDATE SET held = u.held + EXCLUDED.held
        WHERE %s::numeric IS NULL OR %s::numeric >= u.period_spend + u.held + EXCLUDED.held
        RETURNING u.end_user
    )"""


def _hold_statement(task: "Task", alongside: Sequence[Alongside]) -> tuple[str, list[Any]]:
    amount = task.credits_reserved
    tenant_id, key_id = task.tenant_id, task.api_key_id
    params: list[Any] = [amount, tenant_id, amount, amount, amount, key_id, amount]
    expressions = {"api_key_id": "(SELECT id FROM key_hold)"}
    end_user = ""
    if task.end_user:
        budget = task.tenant.end_user_budget
        start = period_start(task.tenant.budget_period)
        params += [tenant_id, task.end_user, amount, start, budget, budget, amount, budget, budget]
        expressions["end_user"] = "(SELECT end_user FROM end_user_hold)"
        end_user = END_USER_HOLD
    task_sql, task_params = insert_select(task, source="tenant_hold", expressions=expressions)
    params += task_params
    line = LedgerEntry(
        tenant_id=tenant_id,
        api_key_id=key_id,
        task_id=task.pk,
        price_id=task.price_id,
        kind=LedgerEntry.Kind.HOLD,
        held_change=amount,
    )
    rows = ""
    for number, (row, expressions) in enumerate([(line, {}), *alongside]):
        row_sql, row_params = insert_select(row, source="task_row", expressions=expressions)
        rows += f", row_{number} AS ({row_sql})"
        params += row_params
    return HOLD.format(end_user=end_user, task=task_sql, rows=rows), params


def _hold_inserted(sql: str, params: list[Any]) -> bool:
    """Run the hold statement: True if it inserted the task, False if a hold found no room."""
    try:
        if not connection.in_atomic_block:
            return _count_one(sql, params)
        with transaction.atomic():
            return _count_one(sql, params)
    except IntegrityError as error:
        cause = error.__cause__
        if isinstance(cause, psycopg.errors.NotNullViolation) and cause.diag.column_name in (
            "api_key_id",
            "end_user",
        ):
            return False  # the tenant had room, the key's or the end user's budget had not
        raise


def _count_one(sql: str, params: list[Any]) -> bool:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] == 1


def _hold_refusal(task: "Task") -> InsufficientQuota | None:
    """Why a hold found no room, from the tenant and the key as they are now (the rare path: one read);
    None when both have room again, since a concurrent settlement freed some."""
    amount = task.credits_reserved
    tenant = Tenant.objects.get(pk=task.tenant_id)
    if tenant.balance < tenant.held + amount:
        return InsufficientQuota(
            f"Insufficient balance: this request may cost up to {amount} credits and the tenant has "
            f"{tenant.available} available."
        )
    if tenant.budget is not None and tenant.budget < tenant.period_spend + tenant.held + amount:
        return InsufficientQuota(
            f"The tenant's {ADJECTIVES[tenant.budget_period]} budget of {tenant.budget} credits has no room "
            f"for a request that may cost up to {amount}.",
            code="budget_exceeded",
        )
    key = ApiKey.objects.get(pk=task.api_key_id)
    if key.budget is not None and key.budget < key.period_spend + key.held + amount:
        return InsufficientQuota(
            f"This key's {ADJECTIVES[key.budget_period]} budget of {key.budget} credits has no room "
            f"for a request that may cost up to {amount}.",
            code="budget_exceeded",
        )
    budget = tenant.end_user_budget
    if task.end_user and budget is not None:
        spent = EndUserSpend.objects.filter(tenant=tenant, end_user=task.end_user).first()
        if budget < (spent.period_spend + spent.held if spent else 0) + amount:
            return InsufficientQuota(
                f"End user {task.end_user!r} has no room in the {ADJECTIVES[tenant.budget_period]} budget "
                f"of {budget} credits each end user has, for a request that may cost up to {amount}.",
                code="budget_exceeded",
            )
    return None


# Settlement of a task's hold, as CTEs of the settling statement (tasks/settle.py), with the
# parameters credits_settle computes. They act only for the row of that statement's CTE `settled`: the
# task row it moves from unfinished to finished (columns id, tenant_id, api_key_id, price_id), so a task
# is settled once whatever redelivery or retry settles it again; the ledger's one line per (task, kind)
# backs that up. A line is written only when it moves something. The key's row is updated after the
# tenant's (it joins the tenant's CTE), the order holds lock them in, so the two cannot deadlock.
CREDITS_SETTLE = """
settle_ledger AS (
    INSERT INTO tenants_ledgerentry
        (tenant_id, api_key_id, task_id, price_id, kind, amount, held_change, memo, created_at)
    SELECT g.tenant_id, g.api_key_id, g.id, g.price_id, line.kind, line.amount, line.held, line.memo,
        %(settle_at)s
    FROM settled g CROSS JOIN (VALUES
        ('capture', %(settle_capture)s::numeric, %(settle_capture_held)s::numeric, %(settle_basis)s),
        ('release', 0::numeric, %(settle_release_held)s::numeric, '')
    ) AS line (kind, amount, held, memo)
    WHERE line.amount <> 0 OR line.held <> 0
    RETURNING 1
),
settle_tenant AS (
    UPDATE tenants_tenant t SET balance = t.balance - %(settle_cost)s,
        held = t.held - %(settle_reserved)s, period_spend = t.period_spend + %(settle_cost)s
    FROM settled g WHERE t.id = g.tenant_id
    RETURNING t.id
),
settle_key AS (
    UPDATE tenants_apikey k SET held = k.held - %(settle_reserved)s,
        period_spend = k.period_spend + %(settle_cost)s
    FROM settled g, settle_tenant WHERE k.id = g.api_key_id
    RETURNING k.id
),
settle_end_user AS (
    UPDATE tenants_enduserspend u SET held = u.held - %(settle_reserved)s,
        period_spend = u.period_spend + %(settle_cost)s
    FROM settled g, settle_key WHERE u.tenant_id = g.tenant_id AND u.end_user = g.end_user
    RETURNING u.id
)"""


LEDGER_PRECISION = Decimal(1).scaleb(-CREDITS["decimal_places"])


def credits_settle(*, task, cost: Decimal, basis: str) -> dict[str, Any]:
    """The parameters of CREDITS_SETTLE: charge `cost` for the task and give back the rest of its hold
    (all of it when cost is zero).

    The actual cost is charged even when it exceeds the estimate that was held, so usage is never
    under-billed. `basis` records what the cost was computed from. A cost finer than the ledger's
    precision (a price with many decimals) is rounded once, here, as the ledger line would store it:
    rounded apart, the balance and the line would differ by a unit and the books would not balance."""
    cost = cost.quantize(LEDGER_PRECISION, ROUND_HALF_UP)
    reserved = task.credits_reserved
    captured_from_hold = min(cost, reserved)
    return {
        "settle_cost": cost,
        "settle_reserved": reserved,
        "settle_capture": -cost,
        "settle_capture_held": -captured_from_hold,
        "settle_basis": basis,
        "settle_release_held": -(reserved - captured_from_hold),
        "settle_at": timezone.now(),
    }


def period_start(period: str, now: datetime | None = None) -> datetime:
    """When the current budget period began: midnight UTC today, or the first of the month."""
    now = now or timezone.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == Spending.Period.DAY else day.replace(day=1)


def budgets_reset(*, now: datetime | None = None) -> int:
    """Start a new budget period for every tenant and key whose period has ended. Run on schedule."""
    now = now or timezone.now()
    reset = 0
    for period in Spending.Period.values:
        start = period_start(period, now)
        for rows in (
            Tenant.objects.filter(budget_period=period),
            ApiKey.objects.filter(budget_period=period),
            EndUserSpend.objects.filter(tenant__budget_period=period),  # the tenant's period
        ):
            reset += rows.filter(period_started_at__lt=start).update(
                period_spend=Decimal(0), period_started_at=start
            )
    return reset
