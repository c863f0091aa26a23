"""A generation's database work: the claim, the attempt and the settlement, one statement each, and a
settlement that happens once whatever calls it again."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from foxgate.fakes.openai import FakeOpenAI
from tasks.jobs import task_run
from tasks.models import Channel, Task, TaskAttempt
from tasks.relay import engine
from tasks.services import channel_add, price_set
from tasks.settle import task_fail
from tenants.models import ApiKey, LedgerEntry, RateEvent, Tenant
from tenants.services import limits_set
from tests.helpers import run_command

pytestmark = pytest.mark.django_db


def submit(api, **body) -> str:
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "Hi", **body}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["id"]


def books(task_id: str) -> tuple:
    """Everything a settlement moves: the task's outcome, its ledger, the balances and the rate window."""
    task = Task.objects.get(pk=task_id)
    return (
        (task.status, task.credits_charged, task.charge_basis, task.error_code, task.finished_at),
        sorted(LedgerEntry.objects.filter(task_id=task_id).values_list("kind", "amount", "held_change")),
        Tenant.objects.values_list("balance", "held", "period_spend").get(pk=task.tenant_id),
        ApiKey.objects.values_list("held", "period_spend").get(pk=task.api_key_id),
        sorted(RateEvent.objects.filter(task_id=task_id).values_list("tokens", flat=True)),
    )


def test_a_successful_generation_is_three_statements_claim_attempt_settle(api, tenant, openai_channel):
    task_id = submit(api, max_tokens=100)
    with CaptureQueriesContext(connection) as captured:
        task_run(task_id)
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) == 3, "\n\n".join(statements)
    claim, attempt, settle = statements
    assert "WITH claimed AS (\n    UPDATE tasks_task" in claim
    assert attempt.startswith("INSERT INTO tasks_taskattempt")
    assert "WITH settled AS (\n    UPDATE tasks_task" in settle and "pg_notify" in settle

    task = Task.objects.get(pk=task_id)
    assert task.status == "completed" and task.channel_id == openai_channel.pk
    usage = task.result["usage"]
    cost = (Decimal(usage["prompt_tokens"]) * 1 + Decimal(usage["completion_tokens"]) * 2) / 1_000_000
    assert task.credits_charged == cost and task.charge_basis == "provider_usage"
    tenant.refresh_from_db()
    assert (tenant.balance, tenant.held, tenant.period_spend) == (Decimal(100) - cost, 0, cost)
    key = ApiKey.objects.get(pk=task.api_key_id)
    assert (key.held, key.period_spend) == (0, cost)
    lines = dict(LedgerEntry.objects.filter(task=task).values_list("kind", "held_change"))
    assert lines["capture"] + lines["release"] == -task.credits_reserved
    attempt = TaskAttempt.objects.get(task=task)
    assert attempt.finished_at is not None and attempt.http_status == 200 and attempt.error_code == ""


def test_a_successful_generation_leaves_its_loop_twice_claim_with_attempt_then_settlement(
    api, openai_channel, monkeypatch
):
    trips = []
    on_calling_thread = engine._on_calling_thread

    async def counted(fn, *args, **kwargs):
        trips.append(fn.__name__)
        return await on_calling_thread(fn, *args, **kwargs)

    monkeypatch.setattr(engine, "_on_calling_thread", counted)
    task_id = submit(api)
    task_run(task_id)
    assert trips == ["task_claim_open", "attempt_settle"]
    assert Task.objects.get(pk=task_id).status == "completed"
    assert TaskAttempt.objects.get(task_id=task_id).finished_at is not None


def test_the_claim_reads_the_task_as_the_orm_does(api, openai_channel):
    task_id = submit(api, max_tokens=100, temperature=0.5)
    claim = engine.task_claim(task_id=task_id, owner="test-host:1")
    stored = Task.objects.get(pk=task_id)
    names = [field.attname for field in Task._meta.concrete_fields]
    assert {name: getattr(claim.task, name) for name in names} == {
        name: getattr(stored, name) for name in names
    }
    assert (claim.task.status, claim.task.lease_owner) == ("processing", "test-host:1")
    assert claim.task.request["max_tokens"] == 100 and claim.task.request["temperature"] == 0.5
    assert (claim.task.catalog_model.name, claim.task.tenant.slug) == ("fake-model", "acme")
    price = claim.task.price
    assert (price.input_per_million, price.output_per_million) == (Decimal(1), Decimal(2))
    assert [channel.pk for channel in claim.channels] == [openai_channel.pk]
    assert (claim.failed, claim.chunks_stored) == (set(), 0)


def test_a_rerun_whose_runs_used_every_attempt_opens_none_and_calls_no_channel(
    api, openai_channel, fake_openai, settings
):
    settings.MAX_ATTEMPTS = 1
    task_id = submit(api)
    second = channel_add(
        name="second",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="",
        model_names=["fake-model"],
    )
    # An earlier run's one call failed on the first channel; the second could still serve.
    TaskAttempt.objects.create(
        task_id=task_id,
        channel=openai_channel,
        number=1,
        finished_at=timezone.now(),
        http_status=503,
        error_code="upstream_error",
        error_message="upstream answered 503",
    )
    task_run(task_id)
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.error_code) == ("failed", "all_platforms_exhausted")
    assert not TaskAttempt.objects.filter(task_id=task_id, finished_at__isnull=True).exists()
    assert not TaskAttempt.objects.filter(channel=second).exists()
    assert fake_openai.requests == []


def test_settling_a_finished_task_again_changes_nothing(api, issued_key, openai_channel):
    limits_set(target=issued_key.api_key, rpm=100)  # so the task has a rate event to correct
    task_id = submit(api)
    task_run(task_id)
    settled = books(task_id)
    assert settled[0][0] == "completed" and settled[4] and settled[4][0] > 1

    task = Task.objects.select_related("price").get(pk=task_id)
    usage = {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}
    assert not task_fail(task=task, code="upstream_error", message="late", usage=usage)
    assert books(task_id) == settled


def test_a_task_that_fails_releases_its_whole_hold_in_the_same_statement(api, tenant, openai_channel):
    task_id = submit(api)
    task = Task.objects.select_related("price").get(pk=task_id)
    with CaptureQueriesContext(connection) as captured:
        assert task_fail(task=task, code="upstream_rejected", message="no", channel=openai_channel)
    assert len(captured.captured_queries) == 1
    (status, charged, basis, code, _), lines, balances, key, _ = books(task_id)
    assert (status, charged, basis, code) == ("failed", 0, "nothing_delivered", "upstream_rejected")
    assert lines == sorted([("hold", 0, task.credits_reserved), ("release", 0, -task.credits_reserved)])
    assert balances == (Decimal(100), 0, 0) and key == (0, 0)


def test_a_successful_trial_call_closes_the_breaker(api, openai_channel):
    Channel.objects.filter(pk=openai_channel.pk).update(
        circuit_state="open", circuit_open_until=timezone.now() - timedelta(seconds=1), circuit_reason="x"
    )
    task_id = submit(api)
    task_run(task_id)
    assert Task.objects.get(pk=task_id).status == "completed"
    channel = Channel.objects.get(pk=openai_channel.pk)
    assert (channel.circuit_state, channel.circuit_open_until, channel.circuit_reason) == ("closed", None, "")


def test_a_failed_call_fails_over_to_the_next_channel_and_is_charged_once(api, tenant, openai_channel):
    broken = Channel.objects.filter(pk=openai_channel.pk)
    broken.update(priority=10, base_url="http://127.0.0.1:9/v1")  # refuses connections
    with FakeOpenAI() as healthy:
        channel_add(
            name="healthy",
            provider="openai",
            base_url=healthy.base_url,
            api_key="",
            model_names=["fake-model"],
        )
        task_id = submit(api)
        task_run(task_id)
    task = Task.objects.get(pk=task_id)
    assert task.status == "completed" and task.channel.name == "healthy"
    assert [a.error_code for a in task.attempts.order_by("number")] == ["upstream_error", ""]
    assert LedgerEntry.objects.filter(task=task, kind="capture").count() == 1
    tenant.refresh_from_db()
    assert tenant.held == 0 and tenant.balance == Decimal(100) - task.credits_charged


def test_a_charge_finer_than_the_ledger_keeps_the_books_balanced(api, tenant, openai_channel):
    price_set(model_name="fake-model", input_per_million=Decimal("1.5"), output_per_million=Decimal(0))
    task = Task.objects.get(pk=submit(api))
    usage = {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}  # costs 0.0000015
    assert task_fail(task=task, code="upstream_error", message="cut", usage=usage)
    (_, charged, _, _, _), lines, (balance, held, spend), _, _ = books(task.pk)
    assert charged == Decimal("0.000002") and ("capture", -charged, -task.credits_reserved) in lines
    assert (balance, held, spend) == (Decimal(100) - charged, 0, charged)
    assert "books balance" in run_command("billing_audit")
