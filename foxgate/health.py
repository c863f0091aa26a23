"""Liveness and readiness for load balancers and orchestrators."""

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

# A job queued longer than this means no worker cluster is taking jobs.
QUEUE_STALL_SECONDS = 60


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers and the worker cluster is taking jobs off the queue."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT min(lock) FROM django_q_ormq WHERE lock <= now()")
            oldest = cursor.fetchone()[0]
        checks["database"] = "ok"
    except DatabaseError as error:
        return JsonResponse({"status": "unready", "checks": {"database": str(error)[:200]}}, status=503)
    # django-q2 stamps `lock` with the queueing time, and moves it ahead when a worker claims the job:
    # an old one in the past is a job nobody takes.
    stalled = oldest is not None and (timezone.now() - oldest).total_seconds() > QUEUE_STALL_SECONDS
    checks["workers"] = "queue stalled: no worker cluster is taking jobs" if stalled else "ok"
    ready = not stalled
    return JsonResponse(
        {"status": "ready" if ready else "unready", "checks": checks}, status=200 if ready else 503
    )
