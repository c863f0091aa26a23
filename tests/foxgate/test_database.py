"""The embedded PostgreSQL: several processes starting it at once share one healthy server; the
connection check the web pool makes at checkout; one test run per test database at a time."""

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from django_q.models import Schedule

from foxgate.backend.base import connection_alive
from foxgate.database import PREPARE_THRESHOLD, database_settings, direct_conninfo
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import TEST_DATABASE_TAKEN

ATTACH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from foxgate.database import database_settings

    db = database_settings("", Path(sys.argv[1]))
    with psycopg.connect(dbname=db["NAME"], host=db["HOST"], user=db["USER"]) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(42)")  # CREATE TABLE IF NOT EXISTS races with itself
        conn.execute("CREATE TABLE IF NOT EXISTS seen (pid int)")
        conn.execute("INSERT INTO seen VALUES (%s)", [sys.argv[2]])
        print(conn.execute("SELECT count(*) FROM seen").fetchone()[0])
    """
)


def test_concurrent_first_starts_share_one_server(tmp_path):
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", ATTACH, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [starter.communicate(timeout=60) for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0, 0, 0], outputs
    # Every process wrote into the same database of the same server, and that server is still usable.
    again = subprocess.run(
        [sys.executable, "-c", ATTACH, str(tmp_path), "9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert again.stdout.split()[-1] == "5"


def test_database_url_wins_over_the_embedded_server(tmp_path):
    db = database_settings("postgresql://app:s3cret@db.internal:6543/foxgate?sslmode=require", tmp_path)
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "foxgate",
        "app",
        "s3cret",
        "db.internal",
        "6543",
    )
    assert db["OPTIONS"] == {
        "sslmode": "require",
        "connect_timeout": 2,
        "prepare_threshold": PREPARE_THRESHOLD,
    }
    assert not (tmp_path / "pgdata").exists()


@pytest.mark.django_db
def test_a_connection_the_server_ended_is_told_dead_from_its_socket_and_a_live_one_alive():
    params = direct_conninfo()
    with (
        psycopg.connect(**params, autocommit=True) as live,
        psycopg.connect(**params, autocommit=True) as ended,
    ):
        assert connection_alive(live) and connection_alive(ended)
        # as a restart does to every session: the server sends an error, then closes the socket
        assert live.execute("SELECT pg_terminate_backend(%s, 10000)", [ended.info.backend_pid]).fetchone()[0]
        assert not connection_alive(ended)
        assert connection_alive(live)


@pytest.mark.django_db
def test_a_second_test_run_on_the_same_database_stops_before_touching_it(tmp_path):
    tenant_create(slug="first-run", name="First run")
    second = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            f"--basetemp={tmp_path}",  # not the default one, which pytest prunes under this run
            "tests/tenants/test_credits.py::test_budget_resets_and_window_pruning_are_scheduled_in_the_cluster",
        ],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == pytest.ExitCode.INTERRUPTED, second.stdout + second.stderr
    assert TEST_DATABASE_TAKEN in second.stdout and " passed" not in second.stdout
    # this run's database is the one it set up: not dropped and recreated, and not flushed
    assert Schedule.objects.filter(func="tenants.jobs.budgets_reset_job").exists()
    assert Tenant.objects.filter(slug="first-run").exists()
