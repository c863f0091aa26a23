"""Workflows of a task: admission in the web tier, execution in the worker cluster."""

import logging
import math
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from foxgate.errors import InvalidParam, ServiceUnavailable
from tasks.models import Channel, Model, Price, Task, TaskAttempt
from tasks.relays import RELAYS, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.routing import channel_pick, channels_serving
from tasks.serializers import messages_from
from tenants.models import ApiKey
from tenants.services import credits_hold, credits_settle

logger = logging.getLogger(__name__)

# A rough, deliberately generous input estimate for the credit hold; the charge uses reported usage.
CHARS_PER_TOKEN = 3
TOKENS_PER_IMAGE = 1_500


def task_submit(*, api_key: ApiKey, validated: dict[str, Any]) -> Task:
    """Admit a validated request: resolve its model and price, hold credits, insert the task, enqueue it."""
    model = Model.objects.filter(name=validated["model"], enabled=True).first()
    if model is None:
        raise InvalidParam(
            f"Model {validated['model']!r} does not exist.", code="model_not_found", param="model"
        )
    price = model.current_price()
    if price is None:
        raise InvalidParam(
            f"Model {model.name!r} has no price, so it cannot be served.",
            code="model_not_found",
            param="model",
        )
    if not channels_serving(model):
        raise ServiceUnavailable(f"No channel can serve model {model.name!r} right now.")

    messages = messages_from(validated)
    max_tokens = validated.get("max_tokens")
    worst_case_output = max_tokens or model.output_cap
    reserved = price.cost(input_tokens=estimate_input_tokens(messages), output_tokens=worst_case_output)
    with transaction.atomic():
        task = Task.objects.create(
            tenant=api_key.tenant,
            api_key=api_key,
            model=validated["model"],
            catalog_model=model,
            price=price,
            protocol=validated["protocol"],
            request={
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": validated.get("temperature"),
                "reasoning": validated.get("reasoning"),
            },
            stream=validated["stream"],
            sync=validated["sync"],
            user_group=api_key.tenant.group,
            credits_reserved=reserved,
        )
        credits_hold(task=task)
        transaction.on_commit(lambda: async_task("tasks.jobs.task_run", task.id, task_name=task.id))
    return task


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
    return Task.objects.select_related("catalog_model").get(pk=task_id) if claimed else None


def task_execute(*, task_id: str) -> None:
    task = task_claim(task_id=task_id)
    if task is None:
        logger.info("task %s already claimed; skipping redelivery", task_id)
        return
    channel = channel_pick(task.catalog_model)
    if channel is None:
        task_fail(task=task, code="all_platforms_exhausted", message="No enabled channel serves this model.")
        return
    attempt = TaskAttempt.objects.create(task=task, channel=channel, number=1)
    started = time.monotonic()
    try:
        completion = run_async(upstream_complete(channel, upstream_request(task)))
    except UpstreamError as error:
        attempt_finish(attempt, started, http_status=error.http_status, error=error)
        task_fail(task=task, code=error.code, message=error.message)
        return
    attempt_finish(attempt, started, http_status=200)
    task_complete(task=task, completion=completion)


def upstream_request(task: Task) -> UpstreamRequest:
    request = task.request
    return UpstreamRequest(
        model=task.catalog_model.name,
        messages=request["messages"],
        max_tokens=request.get("max_tokens"),
        temperature=request.get("temperature"),
        reasoning=request.get("reasoning"),
    )


async def upstream_complete(channel: Channel, request: UpstreamRequest) -> dict[str, Any]:
    upstream = Upstream(base_url=channel.base_url, api_key=channel.api_key, timeout=settings.UPSTREAM_TIMEOUT)
    relay = RELAYS[channel.provider](http_client(), upstream)
    return await relay.complete(request)


def attempt_finish(
    attempt: TaskAttempt, started: float, *, http_status: int | None, error: UpstreamError | None = None
) -> None:
    attempt.latency_ms = round((time.monotonic() - started) * 1000)
    attempt.http_status = http_status
    if error is not None:
        attempt.error_code = error.code
        attempt.error_message = error.message[:2000]
    attempt.save(update_fields=["latency_ms", "http_status", "error_code", "error_message"])


def task_complete(*, task: Task, completion: dict[str, Any]) -> None:
    usage = completion["usage"]
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.is_finished:
            return
        cost = task.price.cost(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
        credits_settle(task=task, cost=cost)
        task.status = Task.Status.COMPLETED
        task.progress = 100
        task.result = completion
        task.finished_at = timezone.now()
        task.save()


def task_fail(*, task: Task, code: str, message: str) -> None:
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.is_finished:
            return
        credits_settle(task=task, cost=Decimal(0))
        task.status = Task.Status.FAILED
        task.progress = 100
        task.error_code = code
        task.error_message = message
        task.finished_at = timezone.now()
        task.save()


def price_set(*, model_name: str, input_per_million: Decimal, output_per_million: Decimal) -> Price:
    """Append a new price version for the model, creating the catalog entry if it is new."""
    with transaction.atomic():
        model, _ = Model.objects.get_or_create(name=model_name, defaults={"capabilities": ["text", "vision"]})
        model = Model.objects.select_for_update().get(pk=model.pk)
        latest = model.current_price()
        return Price.objects.create(
            model=model,
            version=(latest.version + 1) if latest else 1,
            input_per_million=input_per_million,
            output_per_million=output_per_million,
        )


def channel_add(*, name: str, provider: str, base_url: str, api_key: str, model_names: list[str]) -> Channel:
    with transaction.atomic():
        channel = Channel.objects.create(name=name, provider=provider, base_url=base_url, api_key=api_key)
        for model_name in model_names:
            model, _ = Model.objects.get_or_create(
                name=model_name, defaults={"capabilities": ["text", "vision"]}
            )
            channel.served_models.add(model)
    return channel
