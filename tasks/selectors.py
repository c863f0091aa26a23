"""Reads for the public API, always scoped to the caller's tenant."""

from typing import Any

from foxgate.errors import NotFound
from tasks.models import Task
from tenants.models import Tenant


def task_get(*, tenant: Tenant, task_id: str) -> Task:
    task = Task.objects.for_tenant(tenant).filter(pk=task_id).first()
    if task is None:
        raise NotFound("No task with this id exists for this API key's tenant.", code="task_not_found")
    return task


def task_as_api(task: Task) -> dict[str, Any]:
    """The task object of API.md."""
    completed = task.status == Task.Status.COMPLETED
    failed = task.status == Task.Status.FAILED
    return {
        "id": task.id,
        "object": "llm.generation.task",
        "type": "llm",
        "model": task.model,
        "status": task.status,
        "progress": task.progress,
        "created": int(task.created_at.timestamp()),
        "stream": {"url": f"/v1/llm/generations/{task.id}/stream"} if task.stream else None,
        "results": [task.result] if completed else None,
        "error": {"code": task.error_code, "message": task.error_message, "type": "task_error"}
        if failed
        else None,
        "usage": {
            "credits_reserved": _credits(task.credits_reserved),
            "credits_charged": _credits(task.credits_charged),
            "user_group": task.user_group,
        },
    }


def _credits(amount) -> str | None:
    return None if amount is None else format(amount.normalize(), "f")
