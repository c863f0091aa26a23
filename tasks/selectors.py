"""Reads for the public API, always scoped to the caller's tenant."""

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from foxgate.errors import NotFound
from tasks.events import Subscription, connection_release
from tasks.model_rules import ModelRules, rules_for
from tasks.models import Model, Task
from tasks.retention import unsealed
from tenants.models import ApiKey, ModelRuleOverride, Tenant
from tenants.selectors import format_credits

RECHECK_SECONDS = 5.0


def model_rules(*, model: Model, overrides: list[ModelRuleOverride]) -> ModelRules:
    """The model's intrinsic rules, narrowed by its catalog entry and by the tenant's overrides."""
    rules = rules_for(model.name).tightened(
        capabilities=model.capabilities, max_output_tokens=model.max_output_tokens
    )
    for override in overrides:
        if override.matches(model.name):
            rules = rules.tightened(
                max_images=override.max_images,
                max_output_tokens=override.max_output_tokens,
                reasoning=override.reasoning or None,
            )
    return rules


def models_available(*, api_key: ApiKey) -> list[tuple[Model, ModelRules]]:
    """The models this key may call right now: enabled, priced, served by an enabled channel, on the
    key's allow-list and not disabled by the tenant's overrides; with the rules that apply to each."""
    overrides = list(ModelRuleOverride.objects.for_tenant(api_key.tenant))
    models = (
        Model.objects.filter(
            enabled=True, channels__enabled=True, prices__group__in=[api_key.tenant.group, ""]
        )
        .distinct()
        .order_by("name")
    )
    return [
        (model, model_rules(model=model, overrides=overrides))
        for model in models
        if api_key.allows_model(model.name) and not is_disabled(model.name, overrides)
    ]


def is_disabled(model_name: str, overrides: list[ModelRuleOverride]) -> bool:
    return any(override.disabled and override.matches(model_name) for override in overrides)


def task_get(*, tenant: Tenant, task_id: str) -> Task:
    task = Task.objects.for_tenant(tenant).filter(pk=task_id).first()
    if task is None:
        raise NotFound("No task with this id exists for this API key's tenant.", code="task_not_found")
    return task


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What a sync answer needs of a task: its state, result and error."""

    status: str
    result: dict | None
    error_code: str
    error_message: str

    @property
    def is_finished(self) -> bool:
        return self.status in Task.FINISHED


async def task_wait(*, task_id: str, heard: Subscription, timeout: float) -> TaskOutcome:
    """The task once it has finished, or as it stands after `timeout` seconds.

    `heard` subscribed to the task's events before the task was committed, so while the listener stays
    connected no notification of it can be missed, and the task is read only when one arrives, and not
    even then when the notification carried the outcome (tasks/events.py). It is read at once as well if
    the listener was not listening then, whenever the listener says it may have missed something, and
    every RECHECK_SECONDS: a lost notification costs a few seconds, never a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    must_read = heard.changed
    while True:
        if heard.outcome is not None:
            outcome = json.loads(heard.outcome)
            return TaskOutcome(**outcome | {"result": unsealed(outcome["result"])})
        if must_read:
            heard.changed = False
            heard.chunks.clear()  # a sync waiter wants the end, not the chunks
            outcome = await sync_to_async(task_outcome)(task_id=task_id)
            if outcome.is_finished or deadline - loop.time() <= 0:
                return outcome
        heard.wake.clear()
        if not heard.changed:  # else it was announced while we read: read again at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    heard.wake.wait(), min(RECHECK_SECONDS, max(0, deadline - loop.time()))
                )
        must_read = True  # woken, or the safety interval or the deadline passed


def task_outcome(*, task_id: str) -> TaskOutcome:
    """The task's outcome as it stands, and the connection back to the pool in the same thread hop: the
    waiter may wait minutes more, and must not hold one meanwhile."""
    try:
        fields = ("status", "result", "error_code", "error_message")
        status, result, *error = Task.objects.filter(pk=task_id).values_list(*fields).get()
        return TaskOutcome(status, unsealed(result), *error)
    finally:
        connection_release()


def task_as_api(task: Task) -> dict[str, Any]:
    """The task object of API.md."""
    completed = task.status == Task.Status.COMPLETED
    failed = task.status in (Task.Status.FAILED, Task.Status.CANCELLED)
    return {
        "id": task.id,
        "object": "llm.generation.task",
        "type": "llm",
        "model": task.model,
        "status": task.status,
        "progress": task.progress,
        "can_cancel": not task.is_finished,
        "created": int(task.created_at.timestamp()),
        "stream": {"url": f"/v1/llm/generations/{task.id}/stream"} if task.stream else None,
        "results": [unsealed(task.result)] if completed else None,
        "error": {"code": task.error_code, "message": task.error_message, "type": "task_error"}
        if failed
        else None,
        "usage": {
            "credits_reserved": format_credits(task.credits_reserved),
            "credits_charged": None if task.credits_charged is None else format_credits(task.credits_charged),
            "user_group": task.user_group,
        },
    }
