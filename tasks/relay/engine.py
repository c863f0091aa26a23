"""Runs generations: one asyncio event loop per worker process holds up to WORKER_CONCURRENCY at once.

A django-q2 job (tasks.jobs.task_run) admits its task id to its process's loop and returns at once; while
the loop is full it blocks, so excess work waits in the database (as queued jobs), not in memory. Each
generation claims its task with a lease, calls channels until one answers, records each attempt and hands
the outcome to settle.py. Its ORM statements run on RELAY_DB_THREADS threads (one Django connection each)
and stream chunks on RELAY_CHUNK_CONNECTIONS shared connections, so a process holds a fixed number of
database connections whatever the load. Every LEASE_RENEW_SECONDS the loop renews the leases of all its
tasks in one statement and reclaims tasks whose lease lapsed elsewhere, on a thread and connection of their
own, so no backlog of generations' statements delays a renewal.

Outside a cluster worker (tests, management commands) `task_execute` runs one generation inline, with its
statements on the calling thread."""

import asyncio
import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import util
from typing import Any, TypeVar

import httpx
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connection, models
from django.utils import timezone

from foxgate.database import prepared_cursor
from foxgate.errors import DATABASE_OUTAGE
from foxgate.logs import set_tenant, task_context
from foxgate.tracing import span, stored_parent
from tasks.models import Channel, Model, Price, Task, TaskAttempt
from tasks.relay.calls import CANCELLED, CallOutcome, Cancel, StreamAssembly
from tasks.relay.chunks import ChunkConnections, ChunkWriter
from tasks.relay.providers import (
    RELAYS,
    Relay,
    Upstream,
    UpstreamError,
    UpstreamRequest,
    http_client,
    pooled_client,
)
from tasks.relay.reclaim import cancels_requested, leases_reclaim, leases_renew, tasks_hand_back
from tasks.retention import is_sealed, unsealed
from tasks.routing import attempt_start, breaker_failure
from tasks.settle import ATTEMPT_END_FIELDS, task_cancelled, task_fail, task_finish
from tenants.models import Tenant

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=models.Model)
CHANNEL_BUSY_WAIT_SECONDS = 0.25
RETRY_BACKOFF_MAX_SECONDS = 10
OWNER = f"{socket.gethostname()}:{os.getpid()}"
OUTAGE_RETRY_SECONDS = 60  # how long a generation waits for its database (Engine._db)
OUTAGE_PAUSE_MAX_SECONDS = 2.0
CANCEL_POLL_SECONDS = 1.0
CANCELLED_MESSAGE = "Cancelled while processing."


@dataclass
class Runtime:
    """How a generation reaches the database and the network, and which tasks hold this process's lease."""

    db: Callable[..., Awaitable[Any]]  # runs a sync ORM function off the loop
    client: httpx.AsyncClient
    owner: str
    chunks: ChunkConnections | None = None  # shared; None: each stream opens its own
    claimed: dict[str, Cancel] = field(default_factory=dict)  # task id → its cancel request


@dataclass
class Claim:
    """A task this process just claimed, with everything its run reads, from the claim's one statement."""

    task: Task
    channels: list[Channel]  # enabled channels serving the task's model, as routing reads them
    failed: set[int]  # channels an earlier run of this task already saw fail
    chunks_stored: int  # stream chunks earlier attempts stored: numbering continues after them
    # The first attempt_start's answer, opened on the claim's trip to the database (task_claim_open);
    # None when the run opens its first attempt itself.
    opened: tuple[TaskAttempt | None, bool] | None = None


# One statement claims the task and reads what its run needs. The channels come as JSON with the columns
# routing and the providers read (tasks/routing.py, relay_for, upstream_request); the rest are deferred.
# An earlier run's attempt left open (its process died) says nothing about its channel, so it does not
# count as failed; neither does one the worker itself gave up (internal_error).
# The task's columns are named, not `*`: its row is read by position (building the cursor's description
# of ~30 columns was ~8 % of a worker loop's time), and a column a migration adds while the cluster runs
# leaves the prepared statement's result as it was.
TASK_FIELDS = Task._meta.concrete_fields
_TASK_COLUMNS = ", ".join(f'"{field.column}"' for field in TASK_FIELDS)
# What settlement prices with (Price.cost)
PRICE_RATES = (
    "input_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
    "cache_write_1h_per_million",
    "output_per_million",
)
_PRICE_COLUMNS = ", ".join(f"p.{name}" for name in PRICE_RATES)
CLAIM = f"""
WITH claimed AS (
    UPDATE tasks_task SET status = 'processing', progress = 1, started_at = %(now)s,
        lease_owner = %(owner)s, lease_expires_at = %(expires)s
    WHERE id = %(task)s AND status = 'pending'
    RETURNING {_TASK_COLUMNS}
)
SELECT claimed.*, m.name AS model_name, tn.slug AS tenant_slug,
    {_PRICE_COLUMNS},
    ARRAY(
        SELECT DISTINCT a.channel_id FROM tasks_taskattempt a
        WHERE a.task_id = claimed.id AND a.finished_at IS NOT NULL
            AND a.error_code NOT IN ('', 'internal_error')
    ) AS channels_failed,
    CASE WHEN claimed.stream
        THEN (SELECT count(*) FROM tasks_streamchunk s WHERE s.task_id = claimed.id) ELSE 0
    END AS chunks_stored,
    (
        SELECT coalesce(json_agg(json_build_object(
            'id', c.id, 'name', c.name, 'provider', c.provider, 'base_url', c.base_url,
            'api_key_encrypted', c.api_key_encrypted, 'model_mapping', c.model_mapping,
            'priority', c.priority, 'weight', c.weight, 'timeout_seconds', c.timeout_seconds,
            'max_concurrency', c.max_concurrency, 'enabled', c.enabled, 'circuit_state', c.circuit_state,
            'circuit_open_until', c.circuit_open_until, 'circuit_changed_at', c.circuit_changed_at
        ) ORDER BY c.id), '[]')::text
        FROM tasks_channel c JOIN tasks_channel_served_models cm ON cm.channel_id = c.id
        WHERE cm.model_id = claimed.catalog_model_id AND c.enabled
    ) AS channels,
    EXISTS (
        SELECT FROM tenants_alertrule r WHERE r.tenant_id = claimed.tenant_id AND r.enabled
    ) AS alerts_watched
FROM claimed
JOIN tasks_model m ON m.id = claimed.catalog_model_id
JOIN tenants_tenant tn ON tn.id = claimed.tenant_id
JOIN tasks_price p ON p.id = claimed.price_id
"""  # noqa: S608 - the column names are the model's


def task_claim(*, task_id: str, owner: str) -> Claim | None:
    """Move a pending task to processing under a lease, or return None if some other delivery already did.

    The conditional update is the guard that keeps a redelivered job from calling the upstream twice. The
    same statement returns what the run needs (the task with its model's name, tenant's slug and price,
    the channels that could serve it), so a generation's first database work is one round trip."""
    now = timezone.now()
    params = {
        "task": task_id,
        "owner": owner,
        "now": now,
        "expires": now + timedelta(seconds=settings.LEASE_SECONDS),
    }
    with prepared_cursor() as cursor:
        cursor.execute(CLAIM, params)
        row = cursor.fetchone()
    if row is None:
        return None
    # By position: the task's columns (TASK_FIELDS), then CLAIM's others in the order it lists them.
    task = _from_db(Task, dict(zip([field.attname for field in TASK_FIELDS], row, strict=False)))
    task.content_sealed = is_sealed(task.request)
    task.request = unsealed(task.request)
    model_name, tenant_slug, *rest = row[len(TASK_FIELDS) :]
    rates, (failed, chunks_stored, channels, task.alerts_watched) = (
        rest[: len(PRICE_RATES)],
        rest[len(PRICE_RATES) :],
    )
    task.catalog_model = _from_db(Model, {"id": task.catalog_model_id, "name": model_name})
    task.tenant = _from_db(Tenant, {"id": task.tenant_id, "slug": tenant_slug})
    task.price = _from_db(Price, {"id": task.price_id, **dict(zip(PRICE_RATES, rates, strict=True))})
    return Claim(
        task=task,
        channels=[_from_json(Channel, values) for values in json.loads(channels)],
        failed=set(failed),
        chunks_stored=chunks_stored,
    )


def task_claim_open(*, task_id: str, owner: str) -> Claim | None:
    """task_claim, then the first attempt_start, in one trip off the loop: a hop between the loop and a
    relay thread costs a worker about what a statement does. When the database goes away between the
    two, the claim still holds and the run opens its attempt itself, through Engine._db's retries."""
    claim = task_claim(task_id=task_id, owner=owner)
    # A rerun whose earlier runs used up MAX_ATTEMPTS makes no call (_attempts): open no attempt for it.
    if claim is not None and len(claim.failed) < settings.MAX_ATTEMPTS:
        try:
            claim.opened = attempt_start(task=claim.task, exclude=claim.failed, channels=claim.channels)
        except DATABASE_OUTAGE:
            _drop_if_broken()
    return claim


def _from_db(model: type[M], values: dict[str, Any]) -> M:
    """An instance of `model` from raw column values, as a queryset would build it; the columns left out
    are deferred (read on first access)."""
    columns = [column for column in model._meta.concrete_fields if column.attname in values]
    converted = []
    for column in columns:
        value = values[column.attname]
        for converter in column.get_db_converters(connection):
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, [column.attname for column in columns], converted)


def _from_json(model: type[M], values: dict[str, Any]) -> M:
    """An instance of `model` from a row PostgreSQL rendered as JSON (timestamps as ISO text)."""
    columns = [column for column in model._meta.concrete_fields if column.attname in values]
    return model.from_db(
        connection.alias,
        [column.attname for column in columns],
        [column.to_python(values[column.attname]) for column in columns],
    )


async def generation_run(task_id: str, rt: Runtime) -> None:
    """Run a task: call channels until one answers, at most MAX_ATTEMPTS calls, each on a channel this
    task has not tried, within TASK_DEADLINE_SECONDS. A permanent error fails the task at once, and so
    does any error once streamed output has reached clients (they cannot be given a second answer)."""
    claim = await rt.db(task_claim_open, task_id=task_id, owner=rt.owner)
    if claim is None:
        logger.info("task %s already claimed; skipping redelivery", task_id)
        return
    # A task cancelled while handed back to pending, before this claim, comes with its request.
    cancel = rt.claimed[task_id] = Cancel(requested=claim.task.cancel_requested_at is not None)
    task = claim.task
    try:
        with span(
            "task run",
            parent=stored_parent(task.traceparent),
            task_id=task_id,
            tenant=task.tenant.slug,
            model=task.model,
        ) as task.trace_span:
            await _attempts(claim, rt, cancel)
    finally:
        del rt.claimed[task_id]


async def _attempts(claim: Claim, rt: Runtime, cancel: Cancel) -> None:
    task = claim.task
    set_tenant(task.tenant.slug)
    deadline = time.monotonic() + settings.TASK_DEADLINE_SECONDS
    tried = set(claim.failed)  # channels this task will not go back to
    used = set(tried)  # every channel called, for the final message
    calls = len(tried)
    last_error: UpstreamError | None = None
    last_channel: Channel | None = None
    retrying = False
    # The claim's snapshot of the channels serves the first pick; a failover or a retry reads them
    # afresh, since the failure that caused it may have moved a breaker.
    channels: list[Channel] | None = claim.channels
    opened = claim.opened
    while calls < settings.MAX_ATTEMPTS and time.monotonic() < deadline and not cancel.requested:
        if opened is None:
            opened = await rt.db(attempt_start, task=task, exclude=tried, channels=channels)
        attempt, busy = opened
        opened = channels = None
        if attempt is None:
            if busy:  # every channel left is at its max concurrency: wait for a slot
                await cancel.upstream(asyncio.sleep(CHANNEL_BUSY_WAIT_SECONDS))
                continue
            if (
                retrying
                or len(used) != 1
                or last_channel is None
                or not last_error
                or not last_error.retryable
            ):
                break
            # The only channel failed and no other can take the task: a transient error (refused, reset,
            # 5xx, 429) gets another call on it after a pause, within the deadline and MAX_ATTEMPTS.
            # With several channels, each failed once is the answer (failover already retried).
            pause = min(retry_backoff(calls, last_error), max(0.0, deadline - time.monotonic()))
            await cancel.upstream(asyncio.sleep(pause))
            tried.discard(last_channel.id)
            retrying = True  # if even that channel cannot take it now, stop
            continue
        retrying = False
        calls += 1
        tried.add(attempt.channel_id)
        used.add(attempt.channel_id)
        started = time.monotonic()
        request = upstream_request(task, attempt.channel)
        with span(
            "upstream attempt",
            parent=task.trace_span,
            task_id=task.id,
            attempt=attempt.number,
            channel=attempt.channel.name,
            provider=attempt.channel.provider,
        ) as call:
            if task.stream:
                outcome = await upstream_stream(rt, claim, attempt.channel, request, cancel)
            else:
                outcome = await upstream_complete(rt, attempt.channel, request, cancel)
            call.set_attribute("foxgate.outcome", outcome.error.code if outcome.error else "ok")
        error = outcome.error
        if error is None:
            await rt.db(attempt_settle, task, attempt, started, outcome)
            return
        await rt.db(attempt_finish, attempt, started, outcome)
        if error is CANCELLED:  # the caller's doing, not the channel's: its breaker is left alone
            await rt.db(
                task_cancelled,
                task,
                message=CANCELLED_MESSAGE,
                usage=outcome.usage,
                delivered_tokens=outcome.delivered_tokens,
                channel=attempt.channel,
            )
            return
        await rt.db(breaker_failure, attempt.channel, error)
        # A refused channel key is the channel's fault, not the request's: another channel may serve.
        if outcome.delivered_tokens or (not error.retryable and not error.auth_failure):
            await rt.db(
                task_fail,
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
    if cancel.requested:  # between calls: nothing more was sent
        await rt.db(
            task_cancelled, task, message="The task was cancelled between calls.", channel=last_channel
        )
        return
    tries = f"{len(used)} channel{'s' if len(used) != 1 else ''}"
    reason = f"last error: {last_error.message}" if last_error else "no healthy channel serves this model"
    await rt.db(
        task_fail,
        task=task,
        code="all_platforms_exhausted",
        message=f"Tried {tries}; {reason}",
        channel=last_channel,
    )


def retry_backoff(calls: int, error: UpstreamError) -> float:
    """Seconds before calling the same channel again: the upstream's Retry-After, else 0.5 s doubling."""
    return min(error.retry_after or 0.5 * 2 ** (calls - 1), RETRY_BACKOFF_MAX_SECONDS)


def upstream_request(task: Task, channel: Channel) -> UpstreamRequest:
    request = task.request
    return UpstreamRequest(
        model=channel.upstream_model(task.catalog_model.name),
        messages=request["messages"],
        max_tokens=request.get("max_tokens"),
        temperature=request.get("temperature"),
        reasoning=request.get("reasoning"),
        thinking=request.get("thinking"),
        default_max_tokens=request.get("output_cap") or settings.DEFAULT_OUTPUT_CAP,
        extra=task.upstream_parameters,
        embedding=task.protocol == "embedding",
    )


def relay_for(channel: Channel, client: httpx.AsyncClient | None = None) -> Relay:
    """The channel's adapter on `client`, or on the process's shared client (the admin's probe)."""
    upstream = Upstream(base_url=channel.base_url, api_key=channel.api_key, timeout=channel.timeout)
    return RELAYS[channel.provider](client or http_client(), upstream)


async def upstream_complete(
    rt: Runtime, channel: Channel, request: UpstreamRequest, cancel: Cancel
) -> CallOutcome:
    relay = relay_for(channel, rt.client)
    try:
        completion = await cancel.upstream((relay.embed if request.embedding else relay.complete)(request))
    except UpstreamError as error:
        return CallOutcome(error=error)
    if completion is None:  # cancelled: a provider reports usage only with the answer
        return CallOutcome(error=CANCELLED)
    return CallOutcome(completion=completion, usage=completion["usage"])


async def upstream_stream(
    rt: Runtime, claim: Claim, channel: Channel, request: UpstreamRequest, cancel: Cancel
) -> CallOutcome:
    """Stream from the upstream, storing and announcing each chunk as it comes; the ChatCompletion is
    assembled from the chunks. Numbering continues after chunks an earlier attempt already stored. A
    cancel stops the stream between chunks, and its outcome says what was delivered by then."""
    assembly = StreamAssembly(started=time.monotonic())
    expected = request.max_tokens or request.default_max_tokens
    chunks = relay_for(channel, rt.client).stream(request)
    async with ChunkWriter(
        claim.task.id,
        next_seq=claim.chunks_stored,
        expected_tokens=expected,
        connections=rt.chunks,
        sealed=claim.task.content_sealed,
    ) as writer:
        try:
            while not cancel.requested:
                chunk = await cancel.upstream(anext(chunks, None))
                if chunk is None:
                    break
                assembly.add(chunk)
                await writer.write(json.dumps(chunk, separators=(",", ":")), delivered_tokens=assembly.tokens)
        except UpstreamError as error:
            return assembly.outcome(error)
        finally:
            claim.chunks_stored = writer.next_seq
            await chunks.aclose()  # a stream left mid-way (cancelled) closes its upstream connection here
    return assembly.outcome(CANCELLED if cancel.requested else None)


def attempt_record(attempt: TaskAttempt, started: float, outcome: CallOutcome) -> None:
    """Fill in how the attempt ended (ATTEMPT_END_FIELDS), for the caller to store."""
    error = outcome.error
    attempt.finished_at = timezone.now()
    attempt.latency_ms = round((time.monotonic() - started) * 1000)
    attempt.first_token_ms = outcome.first_token_ms
    attempt.http_status = 200 if error is None else error.http_status
    if error is not None:
        attempt.error_code = error.code
        attempt.error_message = error.message[:2000]


def attempt_finish(attempt: TaskAttempt, started: float, outcome: CallOutcome) -> None:
    attempt_record(attempt, started, outcome)
    attempt.save(update_fields=ATTEMPT_END_FIELDS)


def attempt_settle(task: Task, attempt: TaskAttempt, started: float, outcome: CallOutcome) -> None:
    """Record a successful attempt and settle the task in one statement: an answer recorded is an
    answer charged, so a rerun after a crash never finds a finished call it would have to send again."""
    attempt_record(attempt, started, outcome)
    task_finish(
        task,
        channel=attempt.channel,
        status=Task.Status.COMPLETED,
        result=outcome.completion,
        usage=outcome.usage,
        delivered_tokens=outcome.delivered_tokens,
        attempt=attempt,
    )


def task_execute(*, task_id: str) -> None:
    """Run one generation to its end, inline: its statements on this thread (and in its transaction)."""

    async def run() -> None:
        async with httpx.AsyncClient(timeout=settings.UPSTREAM_TIMEOUT) as client:
            db = _on_calling_thread
            await generation_run(task_id, Runtime(db=db, client=client, owner=OWNER))

    async_to_sync(run)()


async def _on_calling_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


class RelayThreads:
    """Hands statements to the relay threads at most one per thread at a time; among those waiting, a
    new task's claim goes last.

    The threads serve one queue. In a burst, claims of new tasks would pile up in it and every
    settlement (an answer in hand, a slot about to be freed) would wait behind them: more tasks start
    while the started ones cannot end. Waiting here instead, in order of rank, lets the finishing work
    through first."""

    def __init__(self, threads: int) -> None:
        self.free = threads
        self.waiting: list[tuple[int, int, asyncio.Future]] = []  # a heap: (rank, arrival, waiter)
        self.arrivals = itertools.count()

    async def acquire(self, rank: int) -> None:
        if self.free and not self.waiting:
            self.free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (rank, next(self.arrivals), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed a thread as it was cancelled: pass the thread on
            raise

    def release(self) -> None:
        while self.waiting:
            _, _, waiter = heapq.heappop(self.waiting)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Engine:
    """The event loop of one worker process, with its slots, connections and leases."""

    def __init__(self, *, concurrency: int, db_threads: int, chunk_connections: int) -> None:
        self.concurrency = concurrency
        self.slots = threading.BoundedSemaphore(concurrency)
        self.accepting = True
        self.generations: set[asyncio.Task] = set()
        self.db_pool = ThreadPoolExecutor(db_threads, thread_name_prefix="relay-db")
        self.db_threads = RelayThreads(db_threads)
        # Leases are renewed on a thread and connection of their own: behind a queue of generations'
        # statements on the relay threads, a renewal could wait past the lease (seen in a burst of 1,000 on
        # a starved core), and a task still running here would be reclaimed and sent upstream twice.
        self.lease_pool = ThreadPoolExecutor(1, thread_name_prefix="relay-lease")
        self.loop = asyncio.new_event_loop()
        self.rt = Runtime(
            db=self._db,
            # max_connections above the slot count: a generation holds at most one upstream connection.
            client=pooled_client(max_connections=concurrency + 16),
            owner=f"{socket.gethostname()}:{os.getpid()}",
            chunks=ChunkConnections(chunk_connections),
        )
        self.thread = threading.Thread(target=self._run, name="relay-engine", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        logger.info("relay engine of %s started: %d slots", self.rt.owner, self.concurrency)
        asyncio.set_event_loop(self.loop)
        self.leases = self.loop.create_task(self._leases())
        self.cancel_requests = self.loop.create_task(self._cancel_requests())
        self.loop.run_forever()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on a relay thread; while the database is away, again after a growing pause, for up
        to OUTAGE_RETRY_SECONDS. A restart then costs the generations in flight a wait, not their claim
        (a task whose claim failed would stay pending with its job already acknowledged, until the
        10-minute pending reclaim) and not their settlement (the answer is in hand: settling it later
        beats calling the upstream again). Each statement is safe to run twice: the claim and the
        settlement are conditional, and a failed statement's transaction was rolled back."""
        deadline = time.monotonic() + OUTAGE_RETRY_SECONDS
        pause = 0.1
        while True:
            await self.db_threads.acquire(rank=1 if fn is task_claim_open else 0)
            try:
                return await self.loop.run_in_executor(self.db_pool, _db_call, fn, args, kwargs)
            except DATABASE_OUTAGE:
                if time.monotonic() + pause > deadline:
                    raise
            finally:
                self.db_threads.release()
            await asyncio.sleep(pause)  # holding no thread
            pause = min(pause * 2, OUTAGE_PAUSE_MAX_SECONDS)

    async def _lease_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.loop.run_in_executor(self.lease_pool, _db_call, fn, args, kwargs)

    def admit(self, task_id: str) -> bool:
        """Hand the task to the loop; block while every slot is taken. False once draining."""
        self.slots.acquire()
        if not self.accepting:
            self.slots.release()
            return False
        asyncio.run_coroutine_threadsafe(self._generation(task_id), self.loop)
        return True

    async def _generation(self, task_id: str) -> None:
        self.generations.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            with task_context(task_id, tenant=""):
                await generation_run(task_id, self.rt)
        except asyncio.CancelledError:
            raise  # drain: the task is handed back
        except Exception:
            # The database went away mid-run, or a bug: the lease lapses and reclaim reruns the task.
            logger.exception("task %s stopped; its lease will lapse and it will be reclaimed", task_id)
        finally:
            self.generations.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.slots.release()

    async def _leases(self) -> None:
        """Renew this process's leases in one statement, then reclaim lapsed ones, every few seconds."""
        while True:
            await asyncio.sleep(settings.LEASE_RENEW_SECONDS)
            try:
                if self.rt.claimed:
                    await self._lease_db(leases_renew, owner=self.rt.owner, task_ids=list(self.rt.claimed))
                reclaimed = await self._lease_db(leases_reclaim)
                if any(reclaimed.values()):
                    logger.warning("reclaimed tasks whose worker died: %s", reclaimed)
            except RuntimeError:
                # The interpreter is exiting (Ctrl-C, SIGTERM) and has shut the relay threads down: the
                # leases lapse with the process, which is what reclaim is for.
                return
            except Exception:
                logger.exception(
                    "lease renewal or reclaim failed; retrying in %ss", settings.LEASE_RENEW_SECONDS
                )

    async def _cancel_requests(self) -> None:
        """Every CANCEL_POLL_SECONDS, while tasks run here, pass on the cancel requests web processes
        recorded for them (tasks.settle.task_cancel): one indexed statement. Polled rather than heard: a
        LISTEN connection per worker process would have PostgreSQL wake it for every notification of
        every stream chunk and settlement (measured: +0.4 ms of database CPU per request)."""
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            if not self.rt.claimed:
                continue
            try:
                asked = await self._lease_db(cancels_requested, task_ids=list(self.rt.claimed))
            except RuntimeError:
                return  # the interpreter is exiting (see _leases)
            except Exception:
                logger.exception("reading cancel requests failed; retrying")
                continue
            for task_id in asked:
                cancel = self.rt.claimed.get(task_id)
                if cancel is not None:
                    cancel.request()

    def drain(self, seconds: float) -> None:
        """Stop admitting, let in-flight generations finish for `seconds`, then hand back the rest."""
        self.accepting = False
        future = asyncio.run_coroutine_threadsafe(self._drain(seconds), self.loop)
        future.result()

    async def _drain(self, seconds: float) -> None:
        running = set(self.generations)
        if not running:
            return
        logger.info("draining %d generations for up to %ss", len(running), seconds)
        _, left = await asyncio.wait(running, timeout=seconds)
        unfinished = list(self.rt.claimed)  # before cancelling: a cancelled generation forgets its claim
        for generation in left:
            generation.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        if unfinished:
            handed = await self._lease_db(tasks_hand_back, owner=self.rt.owner, task_ids=unfinished)
            logger.info("handed back %d of %d unfinished tasks", handed, len(unfinished))

    def close(self) -> None:
        """Drain at once and release every connection and thread (for a process that keeps running)."""
        self.drain(0)
        threads = self.db_pool._max_workers
        barrier = threading.Barrier(threads)  # one close per relay thread: each holds its own connection
        for _ in range(threads):
            self.db_pool.submit(_close_connection, barrier)
        self.db_pool.shutdown(wait=True)
        self.lease_pool.submit(_close_connection, threading.Barrier(1))
        self.lease_pool.shutdown(wait=True)
        asyncio.run_coroutine_threadsafe(self._close_connections(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    async def _close_connections(self) -> None:
        self.leases.cancel()
        self.cancel_requests.cancel()
        await self.rt.client.aclose()
        chunks = self.rt.chunks
        while chunks is not None and not chunks.idle.empty():
            await chunks.idle.get_nowait().close()


def _close_connection(barrier: threading.Barrier) -> None:
    barrier.wait()
    connection.close()


def _db_call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    """Run an ORM function on a relay thread; after a failure, drop a connection that no longer works
    (the database restarted) so the thread's next statement connects afresh."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        _drop_if_broken()
        raise


def _drop_if_broken() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()


_engine: Engine | None = None
_engine_lock = threading.Lock()


def engine_start() -> Engine:
    """This process's engine, started on first use and kept for the process's life; it drains when the
    worker process exits (django-q2 stops its workers on SIGTERM to the cluster)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine(
                concurrency=settings.WORKER_CONCURRENCY,
                db_threads=settings.RELAY_DB_THREADS,
                chunk_connections=settings.RELAY_CHUNK_CONNECTIONS,
            )
            # Runs as the worker process exits, after its job loop ended (multiprocessing's exit hooks).
            util.Finalize(_engine, _engine.drain, args=(settings.DRAIN_SECONDS,), exitpriority=10)
        return _engine


def engine_running() -> bool:
    return _engine is not None
