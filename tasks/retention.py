"""What a task was asked and answered, and for how long it is kept.

A task's content is its request's messages and tools, its result's messages (or embeddings) and its stream
chunks. With FOXGATE_CONTENT_RETENTION_DAYS set, the scheduled `content_prune` erases it from tasks that
ended that long ago; the task row, its usage, its charges and its ledger lines stay for ever, and
`content_pruned_at` says when it went. A tenant with `store_content` off keeps none from the start: its
requests, results and stream chunks are stored sealed (encrypted with FOXGATE_SECRET_KEYS), opened only by
the worker and by the API answering the caller, and erased after STREAM_RETENTION_SECONDS.
"""

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foxgate.crypto import decrypt, encrypt
from tasks.models import RetentionWatermark, StreamChunk, Task

SEALED = "sealed"
SEALED_TEXT = "sealed:"  # a chunk's JSON starts with "{": this prefix cannot be one
BATCH = 1000
# What an erased request keeps: the numbers that priced and capped it
KEPT_REQUEST_KEYS = ("max_tokens", "temperature", "reasoning", "output_cap")


def sealed(value: Any) -> dict[str, str]:
    return {SEALED: encrypt(json.dumps(value, separators=(",", ":")))}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SEALED in value


def unsealed(value: Any) -> Any:
    """A sealed value opened; any other as it is."""
    return json.loads(decrypt(value[SEALED])) if is_sealed(value) else value


def sealed_text(text: str) -> str:
    """A stream chunk as a tenant that stores no content has it stored."""
    return SEALED_TEXT + encrypt(text)


def unsealed_text(text: str) -> str:
    return decrypt(text.removeprefix(SEALED_TEXT)) if text.startswith(SEALED_TEXT) else text


def request_erased(request: dict[str, Any]) -> dict[str, Any]:
    request = unsealed(request)
    return {"messages": [], **{key: request.get(key) for key in KEPT_REQUEST_KEYS}, "erased": True}


def result_erased(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The result without what it said: a ChatCompletion keeps its ids, finish reasons and usage, its
    messages emptied; an embeddings answer keeps its usage."""
    result = unsealed(result)
    if result is None:
        return None
    if result.get("object") == "list":
        return {**result, "data": []}
    choices = [
        {
            "index": choice.get("index", 0),
            "finish_reason": choice.get("finish_reason"),
            "logprobs": None,
            "message": {"role": "assistant", "content": None},
        }
        for choice in result.get("choices", [])
    ]
    return {**result, "choices": choices}


def content_prune() -> int:
    """Erase the content the retention settings no longer keep (scheduled); how many tasks lost it."""
    now = timezone.now()
    start = now - timedelta(days=100 * 365)  # the first run looks at every task
    watermark, _ = RetentionWatermark.objects.get_or_create(
        pk=1, defaults={"pruned_before": start, "sealed_before": start}
    )
    pruned = 0
    if settings.CONTENT_RETENTION_DAYS:
        cutoff = now - timedelta(days=settings.CONTENT_RETENTION_DAYS)
        pruned += _prune(Task.objects.all(), since=watermark.pruned_before, before=cutoff)
        watermark.pruned_before = max(watermark.pruned_before, cutoff)
    cutoff = now - timedelta(seconds=settings.STREAM_RETENTION_SECONDS)
    sealing = Task.objects.filter(tenant__store_content=False)
    pruned += _prune(sealing, since=watermark.sealed_before, before=cutoff)
    watermark.sealed_before = max(watermark.sealed_before, cutoff)
    watermark.save()
    return pruned


def _prune(tasks, *, since, before) -> int:
    """Erase the content of `tasks` that ended in [since, before), a batch at a time."""
    ending = tasks.filter(finished_at__gte=since, finished_at__lt=before, content_pruned_at__isnull=True)
    pruned = 0
    while batch := list(ending.only("id", "request", "result")[:BATCH]):
        now = timezone.now()
        for task in batch:
            task.request, task.result = request_erased(task.request), result_erased(task.result)
            task.content_pruned_at = now
        with transaction.atomic():
            Task.objects.bulk_update(batch, ["request", "result", "content_pruned_at"])
            StreamChunk.objects.filter(task__in=batch).delete()
        pruned += len(batch)
    return pruned
