"""The hot path's statements are prepared once per connection and reused, with the same answers; a new
connection prepares them again; with preparing off (a pooler that cannot keep them) nothing is prepared."""

import uuid
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django_q.conf import Conf

from foxgate.database import PREPARE_THRESHOLD, database_settings, direct_conninfo
from tasks.jobs import task_run
from tasks.models import Task
from tenants.models import LedgerEntry

pytestmark = pytest.mark.django_db

# How each hot statement begins, as pg_prepared_statements shows it (psycopg numbers the parameters).
HOT = {
    "price read": "SELECT p.",
    "admission": "WITH tenant_hold AS",
    "claim": "WITH claimed AS",
    "attempt insert": "INSERT INTO tasks_taskattempt",
    "settlement": "WITH settled AS",
}
CLUSTER = ("claim", "attempt insert", "settlement")


@pytest.fixture
def persistent_connection(monkeypatch):
    """This thread's connection kept across requests, as the cluster's and the web pool's are (the test
    settings close it when a request ends); and a queue of the test's own, so that a worker cluster
    running in this session takes none of its committed jobs."""
    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"prepared-{uuid.uuid4().hex[:8]}")
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)
    yield
    connection.close()


def submitted(api) -> str:
    answer = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "Hi"}, format="json")
    assert answer.status_code == 200, answer.json()
    return answer.json()["id"]


def generation(api) -> Task:
    """One generation, submitted and run in this process, on this test's connection."""
    task_id = submitted(api)
    task_run(task_id)
    return Task.objects.get(pk=task_id)


def prepared() -> dict[str, list[int]]:
    """Per hot statement, the number of runs of each statement prepared for it on this connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        rows = cursor.fetchall()
    return {
        name: [runs for statement, runs in rows if statement.lstrip().startswith(start)]
        for name, start in HOT.items()
    }


def cluster_prepared() -> dict[str, list[int]]:
    """prepared(), of the cluster's statements: a web request gives its connection back when it ends
    (to the pool in production; here, with no pool, it closes), the cluster keeps its own."""
    return {name: runs for name, runs in prepared().items() if name in CLUSTER}


def test_each_hot_statement_is_prepared_once_and_run_again_from_it_with_the_same_outcome(
    api, tenant, openai_channel
):
    first, second = generation(api), generation(api)
    # one prepared statement each, run by both generations: parsed and planned once, not twice
    assert prepared() == {name: [2] for name in HOT}
    for task in (first, second):
        assert task.status == Task.Status.COMPLETED and task.result["choices"]
        assert task.credits_charged > 0
        lines = LedgerEntry.objects.filter(task=task)
        assert sorted(lines.values_list("kind", flat=True)) == ["capture", "hold", "release"]
        assert sum(line.held_change for line in lines) == 0  # the hold fully captured or released
    assert (first.credits_reserved, first.credits_charged) == (
        second.credits_reserved,
        second.credits_charged,
    )
    tenant.refresh_from_db()
    assert tenant.balance == Decimal(100) - first.credits_charged - second.credits_charged
    assert tenant.held == 0


@pytest.mark.django_db(transaction=True)  # the connection must be closable, so no test transaction
def test_a_new_connection_prepares_the_statements_again_instead_of_failing(
    api, openai_channel, persistent_connection
):
    first, second = submitted(api), submitted(api)
    task_run(first)
    old_session = connection.connection.info.backend_pid
    connection.close()  # as after a database restart: the next statement comes on a new session

    task_run(second)
    assert connection.connection.info.backend_pid != old_session
    assert Task.objects.get(pk=second).status == Task.Status.COMPLETED
    assert cluster_prepared() == {name: [1] for name in CLUSTER}


def test_with_preparing_turned_off_nothing_is_prepared_and_generations_still_complete(
    api, openai_channel, monkeypatch, tmp_path
):
    url = "postgresql:///foxgate"
    assert database_settings(url, tmp_path)["OPTIONS"]["prepare_threshold"] == PREPARE_THRESHOLD
    assert "prepare_threshold" not in database_settings(url, tmp_path, prepare=False)["OPTIONS"]
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)  # Django's default

    first, second = generation(api), generation(api)
    assert [first.status, second.status] == [Task.Status.COMPLETED] * 2
    assert prepared() == {name: [] for name in HOT}


@pytest.mark.django_db(transaction=True)  # autocommit, as the web and the cluster run these statements
def test_statements_the_server_no_longer_holds_are_prepared_again_without_failing_a_generation(
    api, openai_channel, persistent_connection
):
    first, second, third = submitted(api), submitted(api), submitted(api)
    task_run(first)
    # as a pooler that hands over another session, or a DEALLOCATE that psycopg did not send, leave it
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")
    assert cluster_prepared() == {name: [] for name in CLUSTER}

    task_run(second)  # the claim runs unprepared, and the attempt and the settlement prepare afresh
    task_run(third)
    statuses = Task.objects.filter(pk__in=[second, third]).values_list("status", flat=True)
    assert list(statuses) == [Task.Status.COMPLETED] * 2
    assert cluster_prepared() == {"claim": [1], "attempt insert": [2], "settlement": [2]}
    assert generation(api).status == Task.Status.COMPLETED  # and the web side's, on the same session


@pytest.mark.django_db(transaction=True)
def test_a_column_added_by_a_migration_while_processes_run_does_not_fail_their_claims(
    api, openai_channel, persistent_connection
):
    first, second, third = submitted(api), submitted(api), submitted(api)
    task_run(first)  # the claim, which returns the task row's every column by name, is prepared
    # `foxgate migrate`, from another machine
    with psycopg.connect(**direct_conninfo(), autocommit=True) as migrate:
        migrate.execute("ALTER TABLE tasks_task ADD COLUMN added_by_an_upgrade integer")
    try:
        task_run(second)
        task_run(third)
        statuses = Task.objects.filter(pk__in=[second, third]).values_list("status", flat=True)
        assert list(statuses) == [Task.Status.COMPLETED] * 2
        assert cluster_prepared()["claim"] == [3]  # still the statement prepared on the old schema
    finally:
        with psycopg.connect(**direct_conninfo(), autocommit=True) as migrate:
            migrate.execute("ALTER TABLE tasks_task DROP COLUMN added_by_an_upgrade")
