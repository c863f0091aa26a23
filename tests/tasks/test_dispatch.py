"""The django-q2 job that dispatches a generation (tasks.jobs.task_run) in a cluster worker: it hands the
task to the process's relay loop without a statement of its own, so django-q2's connection check before
each job (close_old_django_connections) finds nothing to check and costs the worker no round trip."""

import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks import jobs
from tasks.models import Task
from tasks.relay import engine

pytestmark = pytest.mark.django_db(transaction=True)  # the loop's threads see only committed rows


@pytest.fixture(autouse=True)
def own_queue(monkeypatch):
    """Queue these tests' jobs where no cluster listens: the session's stack must not run them."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"dispatch-unit-{uuid.uuid4().hex[:8]}")


def test_a_job_admitted_to_the_relay_loop_runs_no_statement_on_the_workers_thread(
    api, openai_channel, monkeypatch
):
    running = engine.Engine(concurrency=4, db_threads=2, chunk_connections=1)
    monkeypatch.setattr(engine, "_engine", running)  # as in a cluster worker, where the loop is started
    try:
        response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
        task_id = response.json()["id"]
        with CaptureQueriesContext(connection) as statements:
            jobs.task_run(task_id)
        deadline = time.monotonic() + 20
        while not Task.objects.filter(pk=task_id, status="completed").exists():
            assert time.monotonic() < deadline, "the loop did not run the task"
            time.sleep(0.02)
    finally:
        running.close()
    assert statements.captured_queries == []
