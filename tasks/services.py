"""Workflows of a task: admission in the web tier, execution in the worker cluster."""

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from foxgate.errors import InvalidParam, PermissionDenied, ServiceUnavailable
from foxgate.logs import set_tenant
from tasks.calls import CallOutcome, StreamAssembly
from tasks.events import ChunkWriter, task_notify
from tasks.model_rules import default_capabilities, rules_check
from tasks.models import Channel, Model, Price, StreamChunk, Task, TaskAttempt
from tasks.relays import RELAYS, Relay, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.routing import attempt_start, breaker_failure, breaker_success, channels_available
from tasks.selectors import is_disabled, model_rules
from tasks.serializers import messages_from
from tenants.limits import limits_admit, limits_record, limits_settle
from tenants.models import ApiKey, ModelRuleOverride
from tenants.services import (
    SYSTEM,
    Actor,
    audit_record,
    credits_hold,
    credits_settle,
    refuse_unknown,
    row_update,
)

logger = logging.getLogger(__name__)

PASS_THROUGH = ("top_p", "stop")
CHANNEL_BUSY_WAIT_SECONDS = 0.25  # sent to the upstream exactly as the caller gave them
# A rough, deliberately generous input estimate for the credit hold; the charge uses reported usage.
CHARS_PER_TOKEN = 3
TOKENS_PER_IMAGE = 1_500


@dataclass(frozen=True)
class Admitted:
    task: Task
    headers: dict[str, str]  # X-RateLimit-* for the caller


def task_submit(*, api_key: ApiKey, validated: dict[str, Any]) -> Admitted:
    """Admit a validated request: resolve its model and price, apply the model's rules, check the limits,
    hold credits, insert the task and enqueue it. Nothing is written unless all of that succeeds.

    The key must still be usable (ApiKey.refusal): the API checked it when it authenticated, and any other
    caller (the admin's retry) gets the same answer here."""
    refusal = api_key.refusal(timezone.now())
    if refusal is not None:
        raise refusal
    tenant = api_key.tenant
    overrides = list(ModelRuleOverride.objects.for_tenant(tenant))
    model = model_resolve(name=validated["model"], api_key=api_key, overrides=overrides)
    price = model.current_price(tenant.group)
    if price is None:
        raise InvalidParam(
            f"Model {model.name!r} has no price, so it cannot be served.",
            code="model_not_found",
            param="model",
        )
    rules = model_rules(model=model, overrides=overrides)
    request = {
        "messages": messages_from(validated),
        "max_tokens": validated.get("max_tokens"),
        "temperature": validated.get("temperature"),
        "reasoning": validated.get("reasoning"),
        "top_p": validated.get("top_p"),
        "stop": validated.get("stop"),
    }
    request |= rules_check(model.name, rules, request, protocol=validated["protocol"])
    if not channels_available(model):
        raise ServiceUnavailable(f"No channel can serve model {model.name!r} right now.")

    input_tokens = estimate_input_tokens(request["messages"])
    request["output_cap"] = rules.max_output_tokens or model.output_cap
    worst_case_output = request["max_tokens"] or request["output_cap"]
    reserved = price.cost(input_tokens=input_tokens, output_tokens=worst_case_output)
    # Per-minute token limits count what the caller asked for; settlement corrects it to actual usage.
    limit_tokens = input_tokens + (request["max_tokens"] or 0)
    with transaction.atomic():
        headers = limits_admit(api_key=api_key, tokens=limit_tokens)
        task = Task.objects.create(
            tenant=tenant,
            api_key=api_key,
            model=validated["model"],
            catalog_model=model,
            price=price,
            protocol=validated["protocol"],
            request=request,
            stream=validated["stream"],
            sync=validated["sync"],
            user_group=tenant.group,
            credits_reserved=reserved,
        )
        credits_hold(task=task)
        limits_record(api_key=api_key, task=task, tokens=limit_tokens)
        transaction.on_commit(lambda: async_task("tasks.jobs.task_run", task.id, task_name=task.id))
    return Admitted(task=task, headers=headers)


def model_resolve(*, name: str, api_key: ApiKey, overrides: list[ModelRuleOverride]) -> Model:
    model = Model.objects.filter(name=name, enabled=True).first()
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


def estimate_input_tokens(messages: list[dict[str, Any]]) -> int:
    chars, images = 0, 0
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content:
            if part["type"] == "text":
                chars += len(part["text"])
            else:
                images += 1
    return math.ceil(chars / CHARS_PER_TOKEN) + images * TOKENS_PER_IMAGE


def task_claim(*, task_id: str) -> Task | None:
    """Move a pending task to processing, or return None if some other delivery already did.

    The conditional update is the guard that keeps a redelivered job from calling the upstream twice."""
    claimed = Task.objects.filter(pk=task_id, status=Task.Status.PENDING).update(
        status=Task.Status.PROCESSING, progress=1, started_at=timezone.now()
    )
    return Task.objects.select_related("catalog_model", "tenant").get(pk=task_id) if claimed else None


def task_execute(*, task_id: str) -> None:
    """Run a claimed task: call channels until one answers, at most MAX_ATTEMPTS calls, each on a channel
    this task has not tried, within TASK_DEADLINE_SECONDS. A permanent error fails the task at once, and so
    does any error once streamed output has reached clients (they cannot be given a second answer)."""
    task = task_claim(task_id=task_id)
    if task is None:
        logger.info("task %s already claimed; skipping redelivery", task_id)
        return
    set_tenant(task.tenant.slug)
    deadline = time.monotonic() + settings.TASK_DEADLINE_SECONDS
    tried: set[int] = set()
    last_error: UpstreamError | None = None
    last_channel: Channel | None = None
    while len(tried) < settings.MAX_ATTEMPTS and time.monotonic() < deadline:
        attempt, busy = attempt_start(task=task, exclude=tried)
        if attempt is None:
            if busy:  # every channel left is at its max concurrency: wait for a slot
                time.sleep(CHANNEL_BUSY_WAIT_SECONDS)
                continue
            break
        tried.add(attempt.channel_id)
        started = time.monotonic()
        request = upstream_request(task, attempt.channel)
        outcome = run_async(
            upstream_stream(task, attempt.channel, request)
            if task.stream
            else upstream_complete(attempt.channel, request)
        )
        attempt_finish(attempt, started, outcome)
        error = outcome.error
        if error is None:
            breaker_success(attempt.channel)
            _task_finish(
                task,
                channel=attempt.channel,
                status=Task.Status.COMPLETED,
                result=outcome.completion,
                usage=outcome.usage,
                delivered_tokens=outcome.delivered_tokens,
            )
            return
        breaker_failure(attempt.channel, error)
        # A refused channel key is the channel's fault, not the request's: another channel may serve.
        if outcome.delivered_tokens or (not error.retryable and not error.auth_failure):
            task_fail(
                task=task,
                code=error.code,
                message=error.message,
                usage=outcome.usage,
                delivered_tokens=outcome.delivered_tokens,
                channel=attempt.channel,
            )
            return
        last_error = error
        last_channel = attempt.channel
    tries = f"{len(tried)} channel{'s' if len(tried) != 1 else ''}"
    reason = f"last error: {last_error.message}" if last_error else "no healthy channel serves this model"
    task_fail(
        task=task, code="all_platforms_exhausted", message=f"Tried {tries}; {reason}", channel=last_channel
    )


def upstream_request(task: Task, channel: Channel) -> UpstreamRequest:
    request = task.request
    return UpstreamRequest(
        model=channel.upstream_model(task.catalog_model.name),
        messages=request["messages"],
        max_tokens=request.get("max_tokens"),
        temperature=request.get("temperature"),
        reasoning=request.get("reasoning"),
        default_max_tokens=request.get("output_cap") or settings.DEFAULT_OUTPUT_CAP,
        extra={name: request[name] for name in PASS_THROUGH if request.get(name) is not None},
    )


def relay_for(channel: Channel) -> Relay:
    upstream = Upstream(base_url=channel.base_url, api_key=channel.api_key, timeout=channel.timeout)
    return RELAYS[channel.provider](http_client(), upstream)


async def upstream_complete(channel: Channel, request: UpstreamRequest) -> CallOutcome:
    try:
        completion = await relay_for(channel).complete(request)
    except UpstreamError as error:
        return CallOutcome(error=error)
    return CallOutcome(completion=completion, usage=completion["usage"])


async def upstream_stream(task: Task, channel: Channel, request: UpstreamRequest) -> CallOutcome:
    """Stream from the upstream, storing and announcing each chunk as it comes; the ChatCompletion is
    assembled from the chunks. Numbering continues after chunks an earlier attempt already stored."""
    stored = await StreamChunk.objects.filter(task_id=task.id).acount()
    assembly = StreamAssembly(started=time.monotonic())
    expected = request.max_tokens or request.default_max_tokens
    async with ChunkWriter(task.id, next_seq=stored, expected_tokens=expected) as writer:
        try:
            async for chunk in relay_for(channel).stream(request):
                assembly.add(chunk)
                await writer.write(json.dumps(chunk, separators=(",", ":")), delivered_tokens=assembly.tokens)
        except UpstreamError as error:
            return assembly.outcome(error)
    return assembly.outcome(None)


def attempt_finish(attempt: TaskAttempt, started: float, outcome: CallOutcome) -> None:
    error = outcome.error
    attempt.finished_at = timezone.now()
    attempt.latency_ms = round((time.monotonic() - started) * 1000)
    attempt.first_token_ms = outcome.first_token_ms
    attempt.http_status = 200 if error is None else error.http_status
    if error is not None:
        attempt.error_code = error.code
        attempt.error_message = error.message[:2000]
    attempt.save(
        update_fields=[
            "finished_at",
            "latency_ms",
            "first_token_ms",
            "http_status",
            "error_code",
            "error_message",
        ]
    )


def task_fail(
    *,
    task: Task,
    code: str,
    message: str,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
) -> None:
    """Fail the task; `usage` and `delivered_tokens` say what a broken stream had already produced."""
    _task_finish(
        task,
        status=Task.Status.FAILED,
        error=(code, message),
        usage=usage,
        delivered_tokens=delivered_tokens,
        channel=channel,
    )


def task_charge(task: Task, *, usage: dict | None, delivered_tokens: int = 0) -> tuple[Decimal, str, int]:
    """The settlement rule: (cost, basis, tokens used) for a task that ends, well or badly.

    - provider_usage: the provider reported usage (a finished call, or a stream that broke after its
      usage arrived): charge exactly that, cached input at the cached-input price.
    - delivered_estimate: no usage, but output was delivered before the failure (a stream cut mid-way):
      charge the estimated input plus the output tokens delivered.
    - nothing_delivered: no usage and no output: nothing is charged.
    """
    if usage:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        cost = task.price.cost(
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            cached_input_tokens=cached,
        )
        return cost, "provider_usage", usage["prompt_tokens"] + usage["completion_tokens"]
    if delivered_tokens:
        input_tokens = estimate_input_tokens(task.request["messages"])
        cost = task.price.cost(input_tokens=input_tokens, output_tokens=delivered_tokens)
        return cost, "delivered_estimate", input_tokens + delivered_tokens
    return Decimal(0), "nothing_delivered", 0


def _task_finish(
    task: Task,
    *,
    status: str,
    result: dict | None = None,
    error: tuple[str, str] | None = None,
    usage: dict | None = None,
    delivered_tokens: int = 0,
    channel: Channel | None = None,
) -> None:
    """Settle credits and store the outcome in one transaction, then tell the web processes.

    The row lock and the finished check make this safe to call twice (a redelivered job)."""
    with transaction.atomic():
        # Lock the task row only: locking the shared price row too would deadlock with admissions.
        task = Task.objects.select_for_update(of=("self",)).select_related("price").get(pk=task.pk)
        if task.is_finished:
            return
        cost, basis, tokens = task_charge(task, usage=usage, delivered_tokens=delivered_tokens)
        if result is not None and usage is None:
            # A stream that ended without reporting usage: show what it was charged for.
            input_tokens = tokens - delivered_tokens
            result["usage"] = {
                "prompt_tokens": input_tokens,
                "completion_tokens": delivered_tokens,
                "total_tokens": tokens,
            }
        credits_settle(task=task, cost=cost, basis=basis)
        limits_settle(task=task, tokens=tokens)
        task.status = status
        task.progress = 100
        task.result = result
        task.error_code, task.error_message = error or ("", "")
        task.finished_at = timezone.now()
        task.channel = channel
        task.save()
        task_notify(task.id)
    logger.info(
        "task %s %s%s; charged %s credits (%s)",
        task.id,
        status,
        f" ({task.error_code})" if error else "",
        cost,
        basis,
    )


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
    group: str = "",
    capabilities: list[str] | None = None,
    actor: Actor = SYSTEM,
) -> Price:
    """Append a new price version for the model (and tenant group), creating the catalog entry if new.

    Prices are never edited: every charge keeps pointing at the version it was made with."""
    with transaction.atomic():
        model = Model.objects.select_for_update().get(pk=model_get_or_create(name=model_name).pk)
        if capabilities is not None:
            model.capabilities = capabilities
            model.save(update_fields=["capabilities"])
        latest = model.prices.filter(group=group).order_by("-version").first()
        price = Price.objects.create(
            model=model,
            group=group,
            version=(latest.version + 1) if latest else 1,
            input_per_million=input_per_million,
            cached_input_per_million=cached_input_per_million,
            output_per_million=output_per_million,
        )
        audit_record(
            actor=actor,
            action="price.set",
            tenant=None,
            target=f"model {model_name}" + (f" group {group}" if group else ""),
            details={
                "version": price.version,
                "input_per_million": str(input_per_million),
                "cached_input_per_million": None
                if cached_input_per_million is None
                else str(cached_input_per_million),
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


MODEL_FIELDS = ("name", "capabilities", "max_output_tokens", "enabled")


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


def stream_chunks_expire() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_RETENTION_SECONDS)
    deleted, _ = StreamChunk.objects.filter(task__finished_at__lt=cutoff).delete()
    return deleted


def tasks_reclaim() -> dict[str, int]:
    """Recover tasks a dead process left behind. Run on schedule.

    - pending for RECLAIM_PENDING_SECONDS: its job was never queued (the process died between commit and
      enqueue) or was lost; queue it again (a duplicate is harmless: claiming is conditional);
    - processing past its deadline plus a call's timeout: its worker died. Without streamed output it goes
      back to pending and is queued again; with output already delivered it fails, charged by the rule.
    """
    now = timezone.now()
    requeued = failed = 0
    stale_pending = Task.objects.filter(
        status=Task.Status.PENDING, created_at__lt=now - timedelta(seconds=settings.RECLAIM_PENDING_SECONDS)
    )
    for task_id in stale_pending.values_list("id", flat=True)[:1000]:
        async_task("tasks.jobs.task_run", task_id, task_name=task_id)
        requeued += 1
    lease = timedelta(seconds=settings.TASK_DEADLINE_SECONDS + settings.UPSTREAM_TIMEOUT + 60)
    for task in Task.objects.filter(status=Task.Status.PROCESSING, started_at__lt=now - lease)[:1000]:
        TaskAttempt.objects.filter(task=task, finished_at__isnull=True).update(
            finished_at=now, error_code="internal_error", error_message="the worker stopped during this call"
        )
        chunks = list(StreamChunk.objects.filter(task=task).values_list("data", flat=True))
        if chunks:
            assembly = StreamAssembly(started=0)
            for data in chunks:
                assembly.add(json.loads(data))
            task_fail(
                task=task,
                code="internal_error",
                message="The worker stopped mid-stream.",
                usage=assembly.usage,
                delivered_tokens=assembly.tokens,
            )
            failed += 1
        elif Task.objects.filter(
            pk=task.pk, status=Task.Status.PROCESSING, started_at=task.started_at
        ).update(status=Task.Status.PENDING, progress=0, started_at=None):
            async_task("tasks.jobs.task_run", task.id, task_name=task.id)
            requeued += 1
    return {"requeued": requeued, "failed": failed}
