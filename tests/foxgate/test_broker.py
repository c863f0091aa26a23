"""The PostgreSQL job queue (foxgate/broker.py): no job delivered twice, dispatch on NOTIFY rather than on
a poll, and the jobs of a cluster killed with them in hand back within 30 s."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.tasks import async_task
from psycopg.conninfo import make_conninfo

import foxgate.broker
import tasks.services
from foxgate.broker import CHANNEL, PostgresBroker
from foxgate.database import release_exited_processes
from foxgate.fakes.openai import last_user_content
from tasks.models import Task
from tenants.models import LedgerEntry
from tests.helpers import run_command

KEY = "broker-test"
ROOT = Path(__file__).resolve().parents[2]
APP_NAME = "foxgate-broker-test"


@pytest.mark.django_db(transaction=True)
def test_two_brokers_claiming_at_once_never_get_the_same_job(monkeypatch):
    monkeypatch.setattr(Conf, "BULK", 7)  # several rows per claim, so a claim that overlapped would show
    monkeypatch.setattr(Conf, "POLL", 0.01)
    queued = {PostgresBroker(KEY).enqueue(f"job {n}") for n in range(600)}
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def drain(mine: list[int]) -> None:
        broker = PostgresBroker(KEY)
        start.wait()
        try:
            while OrmQ.objects.filter(key=KEY, lock__lt=Now()).exists():
                mine += [row_id for row_id, _payload in broker.dequeue() or []]
        finally:
            broker.close()
            connections.close_all()

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    first, second = claimed
    assert first and second, "both brokers took a share of the queue"
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(queued)  # each job exactly once


@pytest.fixture
def broker() -> Iterator[PostgresBroker]:
    made = PostgresBroker(KEY)
    yield made
    made.close()  # stops its flusher thread, which closes that thread's connection


def queued(*row_ids: int) -> int:
    return OrmQ.objects.filter(pk__in=row_ids).count()


@pytest.mark.django_db(transaction=True)  # the flusher's own connection sees only committed rows
def test_jobs_acknowledged_together_leave_the_queue_in_one_statement(broker, monkeypatch):
    monkeypatch.setattr(foxgate.broker, "ACK_FLUSH_SECONDS", 3600)  # only the flush below deletes
    rows = [broker.enqueue(f"job {n}") for n in range(20)]
    for row_id in rows:
        broker.acknowledge(row_id)
    assert queued(*rows) == 20  # recorded, not deleted one by one
    with CaptureQueriesContext(connection) as statements:
        broker.flush()
    assert len(statements) == 1
    assert queued(*rows) == 0


@pytest.mark.django_db(transaction=True)
def test_a_lone_acknowledged_job_leaves_the_queue_without_waiting_for_others(broker):
    row_id = broker.enqueue("job")
    broker.acknowledge(row_id)
    wait_for(lambda: queued(row_id) == 0, 10, "the acknowledged job was never deleted")


@pytest.mark.django_db(transaction=True)
def test_a_full_batch_of_acknowledged_jobs_leaves_the_queue_without_waiting_for_the_tick(broker, monkeypatch):
    monkeypatch.setattr(foxgate.broker, "ACK_FLUSH_SECONDS", 3600)  # only a full batch is deleted early
    monkeypatch.setattr(foxgate.broker, "ACK_FLUSH_ROWS", 5)
    rows = [broker.enqueue(f"job {n}") for n in range(5)]
    for row_id in rows:
        broker.acknowledge(row_id)
    wait_for(lambda: queued(*rows) == 0, 10, "a full batch waited for the tick")


@pytest.mark.django_db(transaction=True)
def test_jobs_acknowledged_while_a_flush_runs_leave_the_queue_without_another_acknowledgement(
    broker, monkeypatch
):
    first, second = broker.enqueue("job 0"), broker.enqueue("job 1")
    flushing, release = threading.Event(), threading.Event()
    real_cursor = foxgate.broker.prepared_cursor

    @contextlib.contextmanager
    def slow_cursor(db: Any) -> Iterator[Any]:
        flushing.set()  # the flusher has taken the first row: its DELETE is under way
        release.wait(10)
        with real_cursor(db) as cursor:
            yield cursor

    monkeypatch.setattr(foxgate.broker, "prepared_cursor", slow_cursor)
    broker.acknowledge(first)
    assert flushing.wait(10), "the first acknowledgement was not flushed"
    broker.acknowledge(second)  # recorded while the flusher is busy, so it is not waiting to be woken
    release.set()
    wait_for(lambda: queued(first, second) == 0, 10, "a job acknowledged during a flush stayed queued")


@pytest.mark.django_db(transaction=True)
def test_acknowledgements_a_lost_connection_interrupted_are_deleted_by_the_next_flush(broker, monkeypatch):
    monkeypatch.setattr(foxgate.broker, "ACK_FLUSH_SECONDS", 3600)
    rows = [broker.enqueue(f"job {n}") for n in range(3)]
    for row_id in rows:
        broker.acknowledge(row_id)
    with monkeypatch.context() as lost:
        # The connection dies under the DELETE, as in a database restart.
        lost.setattr(foxgate.broker, "DELETE_ACKNOWLEDGED", "SELECT pg_terminate_backend(pg_backend_pid())")
        with pytest.raises(OperationalError):
            broker.flush()
    broker.flush()  # kept them, and deletes them on a fresh connection: the dead one was dropped
    assert queued(*rows) == 0


@pytest.mark.django_db(transaction=True)
def test_claims_and_acknowledgements_reuse_the_connection_without_a_health_check(broker, monkeypatch):
    monkeypatch.setattr(Conf, "BULK", 1)
    monkeypatch.setattr(foxgate.broker, "ACK_FLUSH_SECONDS", 3600)
    rows = [broker.enqueue(f"job {n}") for n in range(4)]
    assert broker.dequeue()  # the first claim may connect
    wrapper = type(connections["default"])
    round_trips: list[str] = []

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any) -> Any:
            round_trips.append(name)
            return real(self, *args)

        return call

    monkeypatch.setattr(wrapper, "is_usable", counted("SELECT 1", wrapper.is_usable))
    monkeypatch.setattr(wrapper, "get_new_connection", counted("connect", wrapper.get_new_connection))
    for _ in range(3):
        assert broker.dequeue()
    for row_id in rows:
        broker.acknowledge(row_id)
    broker.flush()
    assert round_trips == []
    assert queued(*rows) == 0


@pytest.mark.django_db(transaction=True)
def test_jobs_arriving_one_at_a_time_cost_one_claim_each(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 30)  # a claim that found nothing waits for the next job, not a poll
    jobs = 4
    rows = [PostgresBroker(KEY).enqueue("job 0")]
    claimed: list[int] = []
    claims = 0

    def count_claims(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        nonlocal claims
        claims += sql.lstrip().startswith("UPDATE")
        return execute(sql, *args)

    def pusher() -> None:
        broker = PostgresBroker(KEY)
        try:
            with connection.execute_wrapper(count_claims):
                while len(claimed) < jobs:
                    claimed.extend(row_id for row_id, _payload in broker.dequeue() or [])
        finally:
            broker.close()
            connections.close_all()

    thread = threading.Thread(target=pusher)
    thread.start()
    for n in range(1, jobs):
        wait_for(lambda: len(claimed) == len(rows), 10, "the job was not claimed")
        rows.append(PostgresBroker(KEY).enqueue(f"job {n}"))  # committed: its notification wakes the pusher
    thread.join(60)
    assert claimed == rows
    assert claims == jobs  # not one more per job to find the queue empty after it


def queued_task_ids() -> list[str]:
    return [SignedPackage.loads(row.payload)["args"][0] for row in OrmQ.objects.all()]


@pytest.mark.django_db
def test_a_submit_commits_its_job_with_its_task_not_after(
    api, openai_channel, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
    assert response.status_code == 200
    # The job is in the database already, written by the admission transaction itself: nothing is left
    # for a callback that a crash right after the commit would never run.
    assert queued_task_ids() == [response.json()["id"]]
    assert after_commit == []


@pytest.mark.django_db
def test_a_job_the_queue_refuses_admits_no_task_and_holds_no_credits(
    api, openai_channel, tenant, monkeypatch
):
    job_row = tasks.services.job_row

    def refused(*args, **kwargs):
        # admission writes the queue row in its own statement: here the database refuses that row
        row, _ = job_row(*args, **kwargs)
        return row, {"lock": "now() + make_interval(secs => 1 / 0)"}

    monkeypatch.setattr(tasks.services, "job_row", refused)
    ledger_lines = LedgerEntry.objects.count()
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
    assert response.status_code == 500
    assert not Task.objects.exists()  # no task that no job would ever run
    tenant.refresh_from_db()
    assert tenant.held == 0 and LedgerEntry.objects.count() == ledger_lines


LAUNCH = """
import json, os, sys
import foxgate.settings
foxgate.settings.Q_CLUSTER.update(json.loads(sys.argv[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
import django
django.setup()
import foxgate.broker
vars(foxgate.broker).update(json.loads(sys.argv[2]))
from foxgate.__main__ import main
main(["foxgate", "qcluster"])
"""


@pytest.fixture
def cluster(monkeypatch, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start worker clusters (`foxgate qcluster`, real processes) on the test database, on a queue of their
    own so that the session's stack, if it runs, takes none of this test's jobs; Q_CLUSTER overrides as
    keywords, foxgate.broker's constants in `broker`. Submits in this process go to that queue too."""
    monkeypatch.setattr(Conf, "CLUSTER_NAME", KEY)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": make_conninfo(
            dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
        ),
        "FOXGATE_DATA_DIR": str(settings.DATA_DIR),
        "PGAPPNAME": APP_NAME,  # libpq names the clusters' sessions, so teardown can wait for them to end
    }
    started: list[subprocess.Popen] = []

    def start(broker: dict[str, Any] | None = None, **overrides: Any) -> subprocess.Popen:
        with open(tmp_path / f"cluster-{len(started)}.log", "ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LAUNCH,
                    json.dumps({"cluster_name": KEY, **overrides}),
                    json.dumps(broker or {}),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill reaches the processes it forks
            )
        started.append(process)
        return process

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    release_exited_processes(settings.DATA_DIR)

    def sessions_left() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
            return cursor.fetchone()[0]

    # A killed process's sessions end when PostgreSQL notices; the database is emptied after this test.
    wait_for(lambda: sessions_left() == 0, 30, "the killed clusters' database sessions did not end")


def hold_while(path: str, started: str) -> None:
    """A job that keeps its worker busy while `path` exists (a test's stand-in for a long generation)."""
    with open(started, "a") as log:
        log.write("started\n")
    while Path(path).exists():
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def submit(api, prompt: str) -> str:
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": prompt}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["id"]


def completed(*task_ids: str) -> bool:
    return Task.objects.filter(id__in=task_ids, status="completed").count() == len(task_ids)


@pytest.mark.django_db(transaction=True)  # committed, for the cluster to see
def test_an_idle_cluster_starts_a_task_at_once_though_it_polls_every_30_s(cluster, api, openai_channel):
    cluster(workers=1, poll=30)

    def listening() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query = %s", [f"LISTEN {CHANNEL}"])
            return cursor.fetchone()[0] > 0

    wait_for(listening, 60, "the cluster never listened for jobs")
    first = submit(api, "first")
    wait_for(lambda: completed(first), 10, "the task waited for the 30 s poll")
    # By now the cluster's queue is long empty and it is waiting: only the notification can wake it.
    second = submit(api, "second")
    wait_for(lambda: completed(second), 10, "the task waited for the 30 s poll")


@pytest.mark.django_db(transaction=True)
def test_jobs_a_killed_cluster_had_taken_run_within_30_s_and_once(
    cluster, api, openai_channel, fake_openai, tmp_path
):
    workers, count = 2, 12
    first = cluster(workers=workers, queue_limit=50)
    busy, started = tmp_path / "busy", tmp_path / "started"
    busy.touch()
    for _ in range(workers):
        async_task("tests.foxgate.test_broker.hold_while", str(busy), str(started))
    wait_for(
        lambda: started.exists() and len(started.read_text().splitlines()) == workers,
        60,
        "the cluster's workers never started",
    )
    prompts = [f"prompt {n}" for n in range(count)]
    task_ids = [submit(api, prompt) for prompt in prompts]
    # Every job is off the queue, in the cluster's hands, and none has started: its workers are busy.
    wait_for(
        lambda: OrmQ.objects.filter(key=KEY, lock__gt=Now()).count() == workers + count,
        30,
        "the cluster did not take the jobs",
    )
    assert Task.objects.filter(id__in=task_ids, status="pending").count() == count

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    busy.unlink()  # the held jobs come back too; now they return at once
    cluster(workers=workers)
    wait_for(
        lambda: completed(*task_ids), killed + 30 - time.monotonic(), "the jobs were not back within 30 s"
    )

    sent = Counter(last_user_content(r["body"]["messages"]) for r in fake_openai.requests)
    assert sent == Counter(prompts)  # each sent upstream exactly once


@pytest.mark.django_db(transaction=True)
def test_jobs_whose_acknowledgement_died_with_the_cluster_run_again_harmlessly(
    cluster, api, openai_channel, fake_openai
):
    # This cluster never deletes what it acknowledged (no tick, no batch large enough), and its locks are
    # short: once it is killed, its finished jobs are back on the queue within seconds.
    first = cluster(
        workers=1,
        broker={"ACK_FLUSH_SECONDS": 3600, "ACK_FLUSH_ROWS": 10**6, "LOCK_SECONDS": 2, "RENEW_SECONDS": 0.5},
    )
    prompts = [f"prompt {n}" for n in range(5)]
    task_ids = [submit(api, prompt) for prompt in prompts]
    wait_for(lambda: completed(*task_ids), 60, "the tasks did not complete")
    charged = {task.id: task.credits_charged for task in Task.objects.filter(id__in=task_ids)}
    assert OrmQ.objects.filter(key=KEY).count() == len(task_ids)  # finished, their rows not yet deleted

    os.killpg(first.pid, signal.SIGKILL)  # the acknowledgements it held are lost
    first.wait()
    cluster(workers=1)
    # The second cluster takes each job again, runs it and deletes its row.
    wait_for(lambda: not OrmQ.objects.filter(key=KEY).exists(), 60, "the jobs were not delivered again")

    sent = Counter(last_user_content(r["body"]["messages"]) for r in fake_openai.requests)
    assert sent == Counter(prompts)  # no second upstream call
    assert {task.id: task.credits_charged for task in Task.objects.filter(id__in=task_ids)} == charged
    captures = Counter(
        LedgerEntry.objects.filter(task_id__in=task_ids, kind="capture").values_list("task_id", flat=True)
    )
    assert captures == Counter(dict.fromkeys(task_ids, 1))
    assert "books balance" in run_command("billing_audit")
