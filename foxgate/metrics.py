"""Prometheus metrics, read from the database at scrape time.

Everything here is shared state (queue, tasks, channels), so any process answers for the whole
deployment and no multi-process aggregation is needed. Set FOXGATE_METRICS_TOKEN to require
`Authorization: Bearer <token>`."""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric


class FoxGateCollector:
    def collect(self) -> Iterator[Metric]:
        with connection.cursor() as cursor:
            # the partial indexes on unfinished tasks answer this without touching finished ones
            cursor.execute(
                "SELECT status, count(*) FROM tasks_task WHERE status IN ('pending', 'processing') "
                "GROUP BY status"
            )
            unfinished = dict(cursor.fetchall())
            cursor.execute("SELECT count(*), min(lock) FILTER (WHERE lock <= now()) FROM django_q_ormq")
            queued, oldest = cursor.fetchone()
            cursor.execute(
                "SELECT status, model, sum(tasks), sum(credits) FROM tasks_usagerollup WHERE day = %s "
                "GROUP BY status, model",
                [timezone.now().date()],
            )
            today = cursor.fetchall()
            cursor.execute("SELECT name, enabled, circuit_state FROM tasks_channel")
            channels = cursor.fetchall()

        tasks = GaugeMetricFamily("foxgate_tasks_unfinished", "Tasks waiting or running", labels=["status"])
        for status in ("pending", "processing"):
            tasks.add_metric([status], unfinished.get(status, 0))
        yield tasks
        yield GaugeMetricFamily("foxgate_queue_jobs", "Jobs in the worker cluster's queue", value=queued)
        waiting = (timezone.now() - oldest).total_seconds() if oldest else 0
        yield GaugeMetricFamily(
            "foxgate_queue_oldest_seconds", "Age of the oldest job no worker took", value=waiting
        )
        finished = GaugeMetricFamily(
            "foxgate_tasks_finished_today",
            "Tasks finished today (UTC), from the usage rollup",
            labels=["status", "model"],
        )
        credits = GaugeMetricFamily(
            "foxgate_credits_charged_today", "Credits charged today (UTC)", labels=["model"]
        )
        for status, model, count, charged in today:
            finished.add_metric([status, model], count)
            if status == "completed":
                credits.add_metric([model], float(charged))
        yield finished
        yield credits
        circuit = GaugeMetricFamily(
            "foxgate_channel_circuit",
            "1 for each channel's current breaker state",
            labels=["channel", "state"],
        )
        enabled = GaugeMetricFamily(
            "foxgate_channel_enabled", "Whether a channel takes traffic", labels=["channel"]
        )
        for name, is_enabled, state in channels:
            for option in ("closed", "open", "half_open"):
                circuit.add_metric([name, option], 1 if state == option else 0)
            enabled.add_metric([name], 1 if is_enabled else 0)
        yield circuit
        yield enabled


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(FoxGateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
