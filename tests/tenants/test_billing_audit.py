import csv
from decimal import Decimal

import pytest
from django.core.management import CommandError
from django.db import connection

from tasks.jobs import task_run
from tenants.models import LedgerEntry, Tenant
from tests.helpers import run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_tasks(api, openai_channel, fake_openai):
    """Three completed tasks and one failed one."""

    def run(prompt: str) -> str:
        task_id = api.post(
            "/v1/llm/generations", {"model": "fake-model", "prompt": prompt}, format="json"
        ).json()["id"]
        task_run(task_id)
        return task_id

    ids = [run(f"p{i}") for i in range(3)]
    fake_openai.configure(status=500)
    return [*ids, run("fails")]


def test_clean_books_pass_and_export_one_row_per_task(finished_tasks, tmp_path):
    out = run_command("billing_audit", "--csv", str(tmp_path / "tasks.csv"))
    assert "books balance" in out
    rows = list(csv.DictReader((tmp_path / "tasks.csv").open()))
    assert {row["task_id"] for row in rows} == set(finished_tasks)
    failed = next(row for row in rows if row["status"] == "failed")
    assert failed["credits_charged"] == "0.000000" and failed["charge_basis"] == "nothing_delivered"
    completed = [row for row in rows if row["status"] == "completed"]
    assert all(
        row["charge_basis"] == "provider_usage" and int(row["completion_tokens"]) > 0 for row in completed
    )


def test_a_hand_edited_ledger_line_is_named(finished_tasks):
    capture = LedgerEntry.objects.filter(kind="capture").first()
    tamper("UPDATE tenants_ledgerentry SET amount = amount - 1 WHERE id = %s", capture.pk)
    with pytest.raises(CommandError, match="2 billing discrepancies"):
        run_command("billing_audit")
    problems = "\n".join(_discrepancies())
    assert "tenant acme: balance is" in problems
    assert f"task {capture.task_id}: charged" in problems


def test_a_hold_left_on_a_finished_task_is_named(finished_tasks):
    task_id = finished_tasks[0]
    Tenant.objects.filter(slug="acme").update(held=Decimal("0.5"))
    LedgerEntry.objects.create(
        tenant=Tenant.objects.get(slug="acme"), kind="adjustment", held_change=Decimal("0.5")
    )
    problems = "\n".join(_discrepancies())
    assert problems == ""  # a consistent adjustment is fine...
    tamper("DELETE FROM tenants_ledgerentry WHERE task_id = %s AND kind = 'release'", task_id)
    problems = "\n".join(_discrepancies())
    assert f"task {task_id}: is completed but" in problems and "still held" in problems


def test_scoped_to_one_tenant_and_a_period(finished_tasks, tmp_path):
    run_command(
        "billing_audit",
        "--tenant",
        "acme",
        "--since",
        "2000-01-01",
        "--until",
        "2000-01-02",
        "--csv",
        str(tmp_path / "empty.csv"),
    )
    assert len(list(csv.reader((tmp_path / "empty.csv").open()))) == 1  # the header alone
    with pytest.raises(CommandError, match="no tenant"):
        run_command("billing_audit", "--tenant", "nobody")
    with pytest.raises(CommandError, match="--since"):
        run_command("billing_audit", "--since", "last tuesday")


def tamper(statement: str, arg) -> None:
    """Change the ledger as someone with superuser access to the database could, past its trigger."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(statement, [arg])
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def _discrepancies() -> list[str]:
    from tenants.billing import billing_discrepancies

    return list(billing_discrepancies())
