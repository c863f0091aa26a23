"""Runs a claimed task: picks channels, calls the upstream, records each attempt, and hands the outcome to
settle.py."""

import json
import logging
import time

from django.conf import settings
from django.utils import timezone

from foxgate.logs import set_tenant
from tasks.models import Channel, StreamChunk, Task, TaskAttempt
from tasks.relay.calls import CallOutcome, StreamAssembly
from tasks.relay.chunks import ChunkWriter
from tasks.relay.providers import (
    RELAYS,
    Relay,
    Upstream,
    UpstreamError,
    UpstreamRequest,
    http_client,
    run_async,
)
from tasks.relay.settle import task_fail, task_finish
from tasks.routing import attempt_start, breaker_failure, breaker_success

logger = logging.getLogger(__name__)

PASS_THROUGH = ("top_p", "stop")  # sent to the upstream exactly as the caller gave them
CHANNEL_BUSY_WAIT_SECONDS = 0.25


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
            task_finish(
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
