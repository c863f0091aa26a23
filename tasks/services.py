"""Workflows of a task: admission in the web tier, execution in the worker cluster."""

import copy
import functools
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from django_q import humanhash
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage

from foxgate.database import prepared_cursor
from foxgate.errors import InvalidParam, PermissionDenied, ServiceUnavailable
from tasks.catalog import catalog
from tasks.model_rules import default_capabilities, rules_check
from tasks.models import Channel, IdempotencyKey, Model, Price, Task, TaskAttempt, new_task_id
from tasks.retention import sealed
from tasks.routing import channels_available
from tasks.selectors import is_disabled, model_rules
from tasks.serializers import ATTRIBUTION, messages_from
from tenants.limits import limits_admit, limits_apply, limits_record
from tenants.models import ApiKey, ModelRuleOverride, Tenant
from tenants.services import (
    SYSTEM,
    Actor,
    Alongside,
    audit_record,
    credits_hold,
    refuse_unknown,
    row_update,
)

logger = logging.getLogger(__name__)

# A rough, deliberately generous input estimate for the credit hold; the charge uses reported usage.
CHARS_PER_TOKEN = 3
TOKENS_PER_IMAGE = 1_500


@dataclass(frozen=True)
class Admitted:
    task: Task
    headers: dict[str, str]  # X-RateLimit-* for the caller


def task_submit(
    *,
    api_key: ApiKey,
    validated: dict[str, Any],
    task_id: str | None = None,
    dialect: str = "foxapi",
    idempotency_key: str | None = None,
    traceparent: str = "",
) -> Admitted:
    """Admit a validated request: resolve its model and price, apply the model's rules, check the limits,
    hold credits, insert the task and enqueue it. Nothing is written unless all of that succeeds.

    `task_id` is the id to give the task (a sync request listens for its events before it exists);
    a new one by default. With an `idempotency_key` the key used within IDEMPOTENCY_HOURS answers the
    task its first request made, with no hold and no upstream call (`idempotent_replay`). `traceparent`
    names the admission's span, for the worker's spans to continue (foxgate/tracing.py).

    The key must still be usable (ApiKey.refusal): the API checked it when it authenticated, and any other
    caller (the admin's retry) gets the same answer here."""
    refusal = api_key.refusal(timezone.now())
    if refusal is not None:
        raise refusal
    admitting = {"validated": validated, "task_id": task_id, "dialect": dialect, "traceparent": traceparent}
    if idempotency_key is None:
        return _admit(api_key=api_key, **admitting)
    request_hash = hashlib.sha256(json.dumps([dialect, validated], sort_keys=True, default=str).encode())
    used = {"api_key": api_key, "key": idempotency_key, "request_hash": request_hash.hexdigest()}
    replay = idempotent_replay(**used)
    if replay is not None:
        return replay
    try:
        return _admit(api_key=api_key, idempotency=used, **admitting)
    except IntegrityError as error:
        cause = error.__cause__
        if isinstance(cause, psycopg.errors.UniqueViolation) and cause.diag.constraint_name == IDEMPOTENCY:
            replay = idempotent_replay(**used)  # a concurrent duplicate was admitted first
            if replay is not None:
                return replay
        raise


IDEMPOTENCY = "idempotency_key_unique"


def idempotent_replay(*, api_key: ApiKey, key: str, request_hash: str) -> Admitted | None:
    """The task the key's first request made, if it came within IDEMPOTENCY_HOURS; 422 if that request
    was another. An older use of the key is forgotten."""
    since = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_HOURS)
    used = IdempotencyKey.objects.filter(api_key=api_key, key=key)
    first = used.select_related("task").first()
    if first is not None and first.created_at < since:
        used.filter(pk=first.pk).delete()
        first = None
    if first is None:
        return None
    if first.request_hash != request_hash:
        raise InvalidParam(
            f"This Idempotency-Key came with another request in the last {settings.IDEMPOTENCY_HOURS} "
            "hours: a new request needs a new key.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    return Admitted(task=first.task, headers={"Idempotent-Replayed": "true"})


def idempotency_keys_prune() -> int:
    since = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_HOURS)
    return IdempotencyKey.objects.filter(created_at__lt=since).delete()[0]


def _admit(
    *,
    api_key: ApiKey,
    validated: dict[str, Any],
    task_id: str | None,
    dialect: str,
    traceparent: str,
    idempotency: dict[str, Any] | None = None,
) -> Admitted:
    tenant = api_key.tenant
    price = price_current(name=validated["model"], group=tenant.group, tenant=tenant)
    # Most tenants have no overrides and most models a healthy channel: the price's statement says so,
    # and only the others pay a query for them.
    overrides = (
        list(ModelRuleOverride.objects.for_tenant(tenant))
        if price is None or price.tenant_has_overrides
        else []
    )
    model = model_resolve(
        name=validated["model"], api_key=api_key, overrides=overrides, priced=price.model if price else None
    )
    if price is None:
        raise InvalidParam(
            f"Model {model.name!r} has no price, so it cannot be served.",
            code="model_not_found",
            param="model",
        )
    embedding = validated["protocol"] == "embedding"
    if (model.kind == Model.Kind.EMBEDDING) != embedding:
        where = "POST /v1/embeddings" if model.kind == Model.Kind.EMBEDDING else "a chat endpoint"
        raise InvalidParam(
            f"{model.name} is a{'n' if embedding else ''} {model.kind} model: send it to {where}.",
            code="model_rule_violation",
            param="model",
        )
    rules = model_rules(model=model, overrides=overrides)
    request = {
        "messages": messages_from(validated),
        "max_tokens": validated.get("max_tokens"),
        "temperature": validated.get("temperature"),
        "reasoning": validated.get("reasoning"),
        # the OpenAI chat parameters the upstream is sent (tasks/relay/engine.py, upstream_request)
        "parameters": {k: v for k, v in validated["parameters"].items() if k not in ATTRIBUTION},
    }
    if "thinking" in validated:  # Anthropic's own thinking settings, as /v1/messages got them
        request["thinking"] = validated["thinking"]
    if not embedding:  # the chat rules (media, output caps, sampling) say nothing of an embedding
        request |= rules_check(model.name, rules, request, protocol=validated["protocol"])
    if not price.channel_closed and not channels_available(model):
        raise ServiceUnavailable(f"No channel can serve model {model.name!r} right now.")

    input_tokens = estimate_input_tokens(request["messages"], request["parameters"].get("tools"))
    request["output_cap"] = rules.max_output_tokens or model.output_cap
    worst_case_output = 0 if embedding else request["max_tokens"] or request["output_cap"]
    if not tenant.store_content:
        stored = sealed(request)  # the worker opens it; the retention job erases it (tasks/retention.py)
    task = Task(
        id=task_id or new_task_id(),
        tenant=tenant,
        api_key=api_key,
        model=validated["model"],
        catalog_model=model,
        price=price,
        protocol=validated["protocol"],
        dialect=dialect,
        request=request if tenant.store_content else stored,
        end_user=validated["parameters"].get("user", ""),
        tags=validated["parameters"].get("metadata", {}),
        stream=validated["stream"],
        sync=validated["sync"],
        callback_url=validated.get("callback_url", ""),
        traceparent=traceparent,
        user_group=tenant.group,
        credits_reserved=price.cost(input_tokens=input_tokens, output_tokens=worst_case_output),
    )
    # The queue row is inserted with the task (foxgate/broker.py), not after it commits: a crash between
    # the commit and an on_commit enqueue would leave a task no job will ever run.
    alongside = [job_row("tasks.jobs.task_run", task.id, task_name=task.id)]
    if idempotency is not None:
        alongside.append((IdempotencyKey(task_id=task.id, **idempotency), {}))
    if not limits_apply(api_key=api_key):
        # The common case: one statement, committed on its own (tenants.services.credits_hold).
        credits_hold(task=task, alongside=alongside)
        return Admitted(task=task, headers={})
    # Per-minute token limits count what the caller asked for; settlement corrects it to actual usage.
    limit_tokens = input_tokens + (request["max_tokens"] or 0)
    with transaction.atomic():
        headers = limits_admit(api_key=api_key, tokens=limit_tokens)
        credits_hold(task=task, alongside=alongside)
        limits_record(api_key=api_key, task=task, tokens=limit_tokens)
    return Admitted(task=task, headers=headers)


def job_row(func: str, *args: Any, task_name: str) -> Alongside:
    """The queue row django_q.tasks.async_task would insert for the job, unsaved, so that admission can
    insert it in its own statement: the same signed package, under the cluster's queue name. Its lock is
    the database's now(), as the broker's claims compare it with that clock."""
    _, job_id = humanhash.uuid()
    package: dict[str, Any] = {"id": job_id, "name": task_name, "func": func, "args": args}
    if Conf.CACHED:
        package["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        package["ack_failure"] = Conf.ACK_FAILURES
    package |= {"kwargs": {}, "started": timezone.now()}
    pre_enqueue.send(sender="django_q", task=package)
    return OrmQ(key=Conf.CLUSTER_NAME, payload=SignedPackage.dumps(package)), {"lock": "now()"}


def price_current(*, name: str, group: str, tenant: Tenant) -> Price | None:
    """Model.current_price of the enabled model called `name`, with its model: the latest price of the
    tenant's group, else the latest price for every group.

    Annotated with `tenant_has_overrides` and `channel_closed` (an enabled channel with a closed
    breaker serves the model, so routing's channels_available would list it). From this process's
    catalog (tasks/catalog.py) when it holds both, else read and kept. Inside a transaction the catalog
    is neither used nor filled: the transaction may have changed the catalog itself, which its reads see
    at once and a rollback takes back without a notification."""
    outside = not connection.in_atomic_block
    kept = catalog.price(name, group) if outside else None
    has_overrides = catalog.has_overrides(tenant.pk) if outside else None
    if kept is not None and has_overrides is not None:
        price, channel_closed = kept
        price = copy.copy(price)  # the kept one is shared by concurrent submits of other tenants
    else:
        stamp = catalog.generation()
        read = _price_read(name=name, group=group, tenant=tenant)
        if read is None:
            return None  # unknown or unpriced: rare, and answered by the statements that say which
        price, has_overrides, channel_closed = read
        if outside:
            catalog.keep(
                stamp,
                name=name,
                group=group,
                price=copy.copy(price),
                channel_closed=channel_closed,
                tenant_id=tenant.pk,
                has_overrides=has_overrides,
            )
    price.tenant_has_overrides, price.channel_closed = has_overrides, channel_closed
    return price


def _price_read(*, name: str, group: str, tenant: Tenant) -> tuple[Price, bool, bool] | None:
    """price_current's answer from the database, in one statement: (price, tenant has overrides, closed
    channel). The statement is written once per process: building it with the ORM cost more CPU than the
    rest of the admission (~3 ms per submit on the benchmark machine, bench/results/admit.md)."""
    with prepared_cursor() as cursor:
        cursor.execute(_price_current_sql(), [tenant.pk, Channel.Circuit.CLOSED, name, group])
        row = cursor.fetchone()
    if row is None:
        return None
    price_fields, model_fields = Price._meta.concrete_fields, Model._meta.concrete_fields
    price = _from_row(Price, price_fields, row[: len(price_fields)])
    price.model = _from_row(Model, model_fields, row[len(price_fields) : -2])
    return price, row[-2], row[-1]


@functools.cache
def _price_current_sql() -> str:
    def columns(model: type[models.Model], alias: str) -> str:
        return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)

    quote = connection.ops.quote_name
    served = Channel.served_models.through._meta
    return f"""
        SELECT {columns(Price, "p")}, {columns(Model, "m")},
            EXISTS (SELECT FROM {ModelRuleOverride._meta.db_table} WHERE tenant_id = %s),
            EXISTS (
                SELECT FROM {served.db_table} s JOIN {Channel._meta.db_table} c
                    ON c.id = s.{served.get_field("channel").column}
                WHERE s.{served.get_field("model").column} = m.id AND c.enabled AND c.circuit_state = %s
            )
        FROM {Price._meta.db_table} p JOIN {Model._meta.db_table} m ON m.id = p.model_id
        WHERE m.name = %s AND m.enabled AND p.{quote("group")} IN (%s, '')
        ORDER BY p.{quote("group")} = '', p.version DESC
        LIMIT 1
    """  # noqa: S608 - names from the models' metadata


def _from_row(model: type[models.Model], fields: list[Any], values: tuple[Any, ...]) -> Any:
    """A model instance from its columns as the database returned them, converted as the ORM would."""
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def model_resolve(
    *, name: str, api_key: ApiKey, overrides: list[ModelRuleOverride], priced: Model | None = None
) -> Model:
    """The enabled model called `name` if this key may use it; `priced` is it when price_current found
    it, so only a request for an unpriced or unknown model looks it up again."""
    model = priced or Model.objects.filter(name=name, enabled=True).first()
    if model is None:
        raise InvalidParam(f"Model {name!r} does not exist.", code="model_not_found", param="model")
    if not api_key.allows_model(name):
        raise PermissionDenied(
            f"This API key may not use model {name!r}.", code="model_not_allowed", param="model"
        )
    if is_disabled(name, overrides):
        raise PermissionDenied(
            f"Model {name!r} is disabled for your organization.", code="model_not_allowed", param="model"
        )
    return model


def estimate_input_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """The prompt's tokens, estimated from its length: the messages, their tool calls and the tools."""
    chars, images = len(json.dumps(tools)) if tools else 0, 0
    for message in messages:
        content = message["content"]
        if "tool_calls" in message:
            chars += len(json.dumps(message["tool_calls"]))
        if content is None:
            continue
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content:
            if part["type"] == "text":
                chars += len(part["text"])
            else:
                images += 1
    return math.ceil(chars / CHARS_PER_TOKEN) + images * TOKENS_PER_IMAGE


def model_get_or_create(*, name: str) -> Model:
    """The catalog entry for a model name; a new one takes the capabilities its family is known for."""
    model, _ = Model.objects.get_or_create(name=name, defaults={"capabilities": default_capabilities(name)})
    return model


def price_set(
    *,
    model_name: str,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_per_million: Decimal | None = None,
    cache_write_per_million: Decimal | None = None,
    cache_write_1h_per_million: Decimal | None = None,
    group: str = "",
    capabilities: list[str] | None = None,
    kind: str | None = None,
    actor: Actor = SYSTEM,
) -> Price:
    """Append a new price version for the model (and tenant group), creating the catalog entry if new.

    Prices are never edited: every charge keeps pointing at the version it was made with."""
    with transaction.atomic():
        model = Model.objects.select_for_update().get(pk=model_get_or_create(name=model_name).pk)
        if capabilities is not None:
            model.capabilities = capabilities
            model.save(update_fields=["capabilities"])
        if kind is not None and kind != model.kind:
            model.kind = kind
            model.save(update_fields=["kind"])
        latest = model.prices.filter(group=group).order_by("-version").first()
        price = Price.objects.create(
            model=model,
            group=group,
            version=(latest.version + 1) if latest else 1,
            input_per_million=input_per_million,
            cached_input_per_million=cached_input_per_million,
            cache_write_per_million=cache_write_per_million,
            cache_write_1h_per_million=cache_write_1h_per_million,
            output_per_million=output_per_million,
        )
        optional = {
            "cached_input_per_million": cached_input_per_million,
            "cache_write_per_million": cache_write_per_million,
            "cache_write_1h_per_million": cache_write_1h_per_million,
        }
        audit_record(
            actor=actor,
            action="price.set",
            tenant=None,
            target=f"model {model_name}" + (f" group {group}" if group else ""),
            details={
                "version": price.version,
                "kind": model.kind,
                "input_per_million": str(input_per_million),
                **{name: None if rate is None else str(rate) for name, rate in optional.items()},
                "output_per_million": str(output_per_million),
            },
        )
    return price


def channel_add(
    *,
    name: str,
    provider: str,
    base_url: str,
    api_key: str,
    model_names: list[str],
    actor: Actor = SYSTEM,
    **routing: Any,
) -> Channel:
    """A new channel; `routing` sets model_mapping, priority, weight, timeout_seconds or max_concurrency."""
    with transaction.atomic():
        channel = Channel.objects.create(
            name=name, provider=provider, base_url=base_url, api_key=api_key, **routing
        )
        for model_name in model_names:
            channel.served_models.add(model_get_or_create(name=model_name))
        audit_record(
            actor=actor,
            action="channel.add",
            tenant=None,
            target=f"channel {name}",
            details={"provider": provider, "base_url": base_url, "models": model_names, **routing},
        )
    return channel


# What an operator may change on a channel. The breaker's columns (circuit_*) belong to routing and are
# never written here; disabled_reason only when a caller asks (disablechannel / enablechannel).
CHANNEL_FIELDS = (
    "name",
    "provider",
    "base_url",
    "model_mapping",
    "priority",
    "weight",
    "timeout_seconds",
    "max_concurrency",
    "enabled",
    "disabled_reason",
    "api_key",
)


def channel_update(
    *, channel: Channel, actor: Actor = SYSTEM, served_models: list[Model] | None = None, **changes: Any
) -> dict[str, Any]:
    """Change a channel's settings, its upstream key (`api_key`, audited as "changed", never by value) or
    the models it serves; only what differs is written, with one AuditEvent for the edit."""
    with transaction.atomic():
        changed = row_update(
            instance=channel,
            actor=actor,
            changes=changes,
            allowed=CHANNEL_FIELDS,
            action="channel.update",
            tenant=None,
            target=f"channel {channel.name}",
            secret_fields=("api_key",),
            stored_as={"api_key": "api_key_encrypted"},
        )
        if served_models is not None:
            before = sorted(channel.served_models.values_list("name", flat=True))
            after = sorted(model.name for model in served_models)
            if before != after:
                channel.served_models.set(served_models)
                audit_record(
                    actor=actor,
                    action="channel.models",
                    tenant=None,
                    target=f"channel {channel.name}",
                    details={"before": {"models": before}, "after": {"models": after}},
                )
                changed["served_models"] = after
    return changed


def channel_remove(*, channel: Channel, actor: Actor = SYSTEM) -> None:
    """Delete a channel that never served a call. One that did is refused: its attempts are the history
    the task pages and the failures dashboard show (and what an upstream's invoice is checked against), so
    such a channel is disabled instead, which stops its traffic and keeps the record."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel.pk)
        attempts = TaskAttempt.objects.filter(channel=channel).count()
        if attempts:
            raise ValidationError(
                {
                    "channel": f"channel {channel.name} has served {attempts} attempts, and their history "
                    f"names it; disable it instead (disablechannel {channel.name})"
                }
            )
        models = sorted(channel.served_models.values_list("name", flat=True))
        channel.delete()
        audit_record(
            actor=actor,
            action="channel.remove",
            tenant=None,
            target=f"channel {channel.name}",
            details={"provider": channel.provider, "base_url": channel.base_url, "models": models},
        )


MODEL_FIELDS = ("name", "kind", "capabilities", "max_output_tokens", "enabled")


def model_add(*, name: str, actor: Actor = SYSTEM, **settings: Any) -> Model:
    """A new catalog entry; it cannot be served until it has a price (price_set)."""
    refuse_unknown(settings, MODEL_FIELDS, "model settings")
    settings.setdefault("capabilities", default_capabilities(name))
    with transaction.atomic():
        model = Model.objects.create(name=name, **settings)
        audit_record(actor=actor, action="model.add", tenant=None, target=f"model {name}", details=settings)
    return model


def model_update(*, model: Model, actor: Actor = SYSTEM, **changes: Any) -> dict[str, Any]:
    return row_update(
        instance=model,
        actor=actor,
        changes=changes,
        allowed=MODEL_FIELDS,
        action="model.update",
        tenant=None,
        target=f"model {model.name}",
    )
