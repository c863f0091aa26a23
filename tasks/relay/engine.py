"""Runs generations: one asyncio event loop per worker process holds up to WORKER_CONCURRENCY at once.

A django-q2 job (tasks.jobs.task_run) admits its task id to its process's loop and returns at once; while
the loop is full it blocks, so excess work waits in the database (as queued jobs), not in memory. Each
generation claims its task with a lease, calls channels until one answers, records each attempt and hands
the outcome to settle.py. Its ORM statements run on RELAY_DB_THREADS threads (one Django connection each)
and stream chunks on RELAY_CHUNK_CONNECTIONS shared connections, so a process holds a fixed number of
database connections whatever the load. Every LEASE_RENEW_SECONDS the loop renews the leases of all its
tasks in one statement and reclaims tasks whose lease lapsed elsewhere.

Outside a cluster worker (tests, management commands) `task_execute` runs one generation inline, with its
statements on the calling thread."""

import asyncio
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
from django.db import connection, transaction
from django.utils import timezone

from foxgate.logs import set_tenant, task_context
from tasks.models import Channel, StreamChunk, Task, TaskAttempt
from tasks.relay.calls import CallOutcome, StreamAssembly
from tasks.relay.chunks import ChunkConnections, ChunkWriter
from tasks.relay.providers import RELAYS, Relay, Upstream, UpstreamError, UpstreamRequest, http_client
from tasks.relay.reclaim import leases_reclaim, leases_renew, tasks_hand_back
from tasks.relay.settle import task_fail, task_finish
from tasks.routing import attempt_start, breaker_failure, breaker_success

logger = logging.getLogger(__name__)

T = TypeVar("T")
PASS_THROUGH = ("top_p", "stop")  # sent to the upstream exactly as the caller gave them
CHANNEL_BUSY_WAIT_SECONDS = 0.25
RETRY_BACKOFF_MAX_SECONDS = 10
OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    """How a generation reaches the database and the network, and which tasks hold this process's lease."""

    db: Callable[..., Awaitable[Any]]  # runs a sync ORM function off the loop
    client: httpx.AsyncClient
    owner: str
    chunks: ChunkConnections | None = None  # shared; None: each stream opens its own
    claimed: set[str] = field(default_factory=set)


def task_claim(*, task_id: str, owner: str) -> Task | None:
    """Move a pending task to processing under a lease, or return None if some other delivery already did.

    The conditional update is the guard that keeps a redelivered job from calling the upstream twice."""
    now = timezone.now()
    claimed = Task.objects.filter(pk=task_id, status=Task.Status.PENDING).update(
        status=Task.Status.PROCESSING,
        progress=1,
        started_at=now,
        lease_owner=owner,
        lease_expires_at=now + timedelta(seconds=settings.LEASE_SECONDS),
    )
    return Task.objects.select_related("catalog_model", "tenant").get(pk=task_id) if claimed else None


def channels_failed(task: Task) -> set[int]:
    """Channels an earlier run of this task already saw fail (a rerun after its process died).

    An attempt the dead process left open says nothing about its channel, so it does not count."""
    return set(
        task.attempts.filter(finished_at__isnull=False)
        .exclude(error_code__in=("", "internal_error"))
        .values_list("channel_id", flat=True)
    )


async def generation_run(task_id: str, rt: Runtime) -> None:
    """Run a task: call channels until one answers, at most MAX_ATTEMPTS calls, each on a channel this
    task has not tried, within TASK_DEADLINE_SECONDS. A permanent error fails the task at once, and so
    does any error once streamed output has reached clients (they cannot be given a second answer)."""
    task = await rt.db(task_claim, task_id=task_id, owner=rt.owner)
    if task is None:
        logger.info("task %s already claimed; skipping redelivery", task_id)
        return
    rt.claimed.add(task_id)
    try:
        await _attempts(task, rt)
    finally:
        rt.claimed.discard(task_id)


async def _attempts(task: Task, rt: Runtime) -> None:
    set_tenant(task.tenant.slug)
    deadline = time.monotonic() + settings.TASK_DEADLINE_SECONDS
    tried: set[int] = await rt.db(channels_failed, task)  # channels this task will not go back to
    used = set(tried)  # every channel called, for the final message
    calls = len(tried)
    last_error: UpstreamError | None = None
    last_channel: Channel | None = None
    retrying = False
    while calls < settings.MAX_ATTEMPTS and time.monotonic() < deadline:
        attempt, busy = await rt.db(attempt_start, task=task, exclude=tried)
        if attempt is None:
            if busy:  # every channel left is at its max concurrency: wait for a slot
                await asyncio.sleep(CHANNEL_BUSY_WAIT_SECONDS)
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
            await asyncio.sleep(pause)
            tried.discard(last_channel.id)
            retrying = True  # if even that channel cannot take it now, stop
            continue
        retrying = False
        calls += 1
        tried.add(attempt.channel_id)
        used.add(attempt.channel_id)
        started = time.monotonic()
        request = upstream_request(task, attempt.channel)
        if task.stream:
            outcome = await upstream_stream(rt, task, attempt.channel, request)
        else:
            outcome = await upstream_complete(rt, attempt.channel, request)
        error = outcome.error
        if error is None:
            await rt.db(attempt_settle, task, attempt, started, outcome)
            await rt.db(breaker_success, attempt.channel)
            return
        await rt.db(attempt_finish, attempt, started, outcome)
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
        default_max_tokens=request.get("output_cap") or settings.DEFAULT_OUTPUT_CAP,
        extra={name: request[name] for name in PASS_THROUGH if request.get(name) is not None},
    )


def relay_for(channel: Channel, client: httpx.AsyncClient | None = None) -> Relay:
    """The channel's adapter on `client`, or on the process's shared client (the admin's probe)."""
    upstream = Upstream(base_url=channel.base_url, api_key=channel.api_key, timeout=channel.timeout)
    return RELAYS[channel.provider](client or http_client(), upstream)


async def upstream_complete(rt: Runtime, channel: Channel, request: UpstreamRequest) -> CallOutcome:
    try:
        completion = await relay_for(channel, rt.client).complete(request)
    except UpstreamError as error:
        return CallOutcome(error=error)
    return CallOutcome(completion=completion, usage=completion["usage"])


def chunks_stored(task_id: str) -> int:
    return StreamChunk.objects.filter(task_id=task_id).count()


async def upstream_stream(rt: Runtime, task: Task, channel: Channel, request: UpstreamRequest) -> CallOutcome:
    """Stream from the upstream, storing and announcing each chunk as it comes; the ChatCompletion is
    assembled from the chunks. Numbering continues after chunks an earlier attempt already stored."""
    stored = await rt.db(chunks_stored, task.id)
    assembly = StreamAssembly(started=time.monotonic())
    expected = request.max_tokens or request.default_max_tokens
    async with ChunkWriter(
        task.id, next_seq=stored, expected_tokens=expected, connections=rt.chunks
    ) as writer:
        try:
            async for chunk in relay_for(channel, rt.client).stream(request):
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


def attempt_settle(task: Task, attempt: TaskAttempt, started: float, outcome: CallOutcome) -> None:
    """Record a successful attempt and settle the task in one transaction: an answer recorded is an
    answer charged, so a rerun after a crash never finds a finished call it would have to send again."""
    with transaction.atomic():
        attempt_finish(attempt, started, outcome)
        task_finish(
            task,
            channel=attempt.channel,
            status=Task.Status.COMPLETED,
            result=outcome.completion,
            usage=outcome.usage,
            delivered_tokens=outcome.delivered_tokens,
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


class Engine:
    """The event loop of one worker process, with its slots, connections and leases."""

    def __init__(self, *, concurrency: int, db_threads: int, chunk_connections: int) -> None:
        self.concurrency = concurrency
        self.slots = threading.BoundedSemaphore(concurrency)
        self.accepting = True
        self.generations: set[asyncio.Task] = set()
        self.db_pool = ThreadPoolExecutor(db_threads, thread_name_prefix="relay-db")
        self.loop = asyncio.new_event_loop()
        self.rt = Runtime(
            db=self._db,
            # max_connections above the slot count: a generation holds at most one upstream connection.
            client=httpx.AsyncClient(
                timeout=settings.UPSTREAM_TIMEOUT,
                limits=httpx.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency),
            ),
            owner=f"{socket.gethostname()}:{os.getpid()}",
            chunks=ChunkConnections(chunk_connections),
        )
        self.thread = threading.Thread(target=self._run, name="relay-engine", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        logger.info("relay engine of %s started: %d slots", self.rt.owner, self.concurrency)
        asyncio.set_event_loop(self.loop)
        self.leases = self.loop.create_task(self._leases())
        self.loop.run_forever()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.loop.run_in_executor(self.db_pool, _db_call, fn, args, kwargs)

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
                    await self._db(leases_renew, owner=self.rt.owner, task_ids=list(self.rt.claimed))
                reclaimed = await self._db(leases_reclaim)
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
            handed = await self._db(tasks_hand_back, owner=self.rt.owner, task_ids=unfinished)
            logger.info("handed back %d of %d unfinished tasks", handed, len(unfinished))

    def close(self) -> None:
        """Drain at once and release every connection and thread (for a process that keeps running)."""
        self.drain(0)
        threads = self.db_pool._max_workers
        barrier = threading.Barrier(threads)  # one close per relay thread: each holds its own connection
        for _ in range(threads):
            self.db_pool.submit(_close_connection, barrier)
        self.db_pool.shutdown(wait=True)
        asyncio.run_coroutine_threadsafe(self._close_connections(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    async def _close_connections(self) -> None:
        self.leases.cancel()
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
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        raise


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
