"""Liveness and readiness for load balancers and orchestrators."""

import asyncio

import psycopg
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from foxgate.database import direct_conninfo

# A job queued longer than this means no worker cluster is taking jobs.
QUEUE_STALL_SECONDS = 60
# /readyz answers within this, database or not: a probe that hangs is a probe that times out.
DATABASE_PROBE_SECONDS = 0.8
QUERY_TIMEOUT_MS = 500


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers and the worker cluster is taking jobs off the queue.

    The database is probed over a connection of its own under a deadline: through the request's pooled
    connection, a database that is down or restarting would keep this waiting for the pool (seconds)."""
    try:
        await asyncio.wait_for(_database_answers(), DATABASE_PROBE_SECONDS)
        oldest = await sync_to_async(_oldest_waiting_job)()
    except TimeoutError:
        return _unready(f"no answer within {DATABASE_PROBE_SECONDS:g}s")
    except (psycopg.Error, DatabaseError) as error:
        return _unready(str(error).strip()[:200])
    # django-q2 stamps `lock` with the queueing time, and moves it ahead when a worker claims the job:
    # an old one in the past is a job nobody takes.
    stalled = oldest is not None and (timezone.now() - oldest).total_seconds() > QUEUE_STALL_SECONDS
    checks = {
        "database": "ok",
        "workers": "queue stalled: no worker cluster is taking jobs" if stalled else "ok",
    }
    return JsonResponse(
        {"status": "unready" if stalled else "ready", "checks": checks}, status=503 if stalled else 200
    )


def _unready(database: str) -> JsonResponse:
    return JsonResponse({"status": "unready", "checks": {"database": database}}, status=503)


async def _database_answers() -> None:
    conn = await psycopg.AsyncConnection.connect(**direct_conninfo(), autocommit=True)
    async with conn:
        await conn.execute("SELECT 1")


def _oldest_waiting_job() -> object:
    with transaction.atomic(), connection.cursor() as cursor:
        # LOCAL: the setting ends with this transaction, not with the pooled connection's life.
        cursor.execute(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}")
        cursor.execute("SELECT min(lock) FROM django_q_ormq WHERE lock <= now()")
        return cursor.fetchone()[0]
