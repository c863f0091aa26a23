"""Holds, budgets, group prices and the settlement rule."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import ProgrammingError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from tasks.jobs import task_run
from tasks.models import Task
from tasks.services import price_set
from tasks.settle import task_charge
from tenants.authentication import key_cache
from tenants.billing import billing_discrepancies
from tenants.models import ApiKey, EndUserSpend, LedgerEntry, Tenant
from tenants.services import apikey_issue, budgets_reset, limits_set, tenant_update

pytestmark = pytest.mark.django_db


def submit(client, **body):
    return client.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "hello", **body}, format="json"
    )


def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_tenant_budget_refuses_what_would_exceed_it(api, tenant, openai_channel):
    # each request holds about 0.002 credits (1000 output tokens at 2 per million)
    limits_set(target=tenant, budget=Decimal("0.005"), budget_period="day")
    assert submit(api, max_tokens=1000).status_code == 200
    assert submit(api, max_tokens=1000).status_code == 200
    refused = submit(api, max_tokens=1000)
    assert refused.status_code == 402
    assert refused.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "insufficient_quota",
        "code": "budget_exceeded",
        "param": None,
    }
    assert "daily budget" in refused.json()["error"]["message"]


def test_key_budget_is_separate_from_its_siblings(api, tenant, openai_channel):
    capped = apikey_issue(tenant=tenant, budget=Decimal("0.003"))
    assert submit(client_for(capped.secret), max_tokens=1000).status_code == 200
    assert submit(client_for(capped.secret), max_tokens=1000).json()["error"]["code"] == "budget_exceeded"
    assert submit(api, max_tokens=1000).status_code == 200  # the tenant's other key is not capped


def test_spend_counts_against_the_budget_until_the_period_resets(api, tenant, openai_channel):
    limits_set(target=tenant, budget=Decimal("0.003"), budget_period="day")
    task_id = submit(api, max_tokens=1000).json()["id"]
    task_run(task_id)
    charged = Task.objects.get(pk=task_id).credits_charged
    tenant.refresh_from_db()
    assert tenant.period_spend == charged and tenant.held == 0

    Tenant.objects.filter(pk=tenant.pk).update(period_spend=Decimal("0.0025"))
    assert submit(api, max_tokens=1000).json()["error"]["code"] == "budget_exceeded"

    Tenant.objects.filter(pk=tenant.pk).update(period_started_at=timezone.now() - timedelta(days=1))
    assert budgets_reset() >= 1
    tenant.refresh_from_db()
    assert tenant.period_spend == 0
    assert submit(api, max_tokens=1000).status_code == 200


def test_balance_shortfall_is_insufficient_balance_not_budget(api, tenant, openai_channel):
    limits_set(target=tenant, budget=Decimal(1000))
    Tenant.objects.filter(pk=tenant.pk).update(balance=Decimal("0.001"))
    assert submit(api, max_tokens=1000).json()["error"]["code"] == "insufficient_balance"


def test_group_price_applies_to_its_tenants_and_each_charge_records_its_version(api, tenant, openai_channel):
    price_set(
        model_name="fake-model", input_per_million=Decimal(10), output_per_million=Decimal(20), group="gold"
    )
    Tenant.objects.filter(pk=tenant.pk).update(group="gold")
    task_id = submit(api, max_tokens=10).json()["id"]
    task = Task.objects.get(pk=task_id)
    assert (task.price.group, task.price.version, task.user_group) == ("gold", 1, "gold")
    assert LedgerEntry.objects.get(task=task, kind="hold").price == task.price

    Tenant.objects.filter(pk=tenant.pk).update(group="silver")  # no silver price: the all-groups one
    key_cache.clear()
    other = Task.objects.get(pk=submit(api, max_tokens=10).json()["id"])
    assert other.price.group == "" and other.price.input_per_million == 1


def test_cached_input_is_charged_at_its_own_rate(tenant, api, openai_channel):
    price = price_set(
        model_name="fake-model",
        input_per_million=Decimal(10),
        cached_input_per_million=Decimal(1),
        output_per_million=Decimal(0),
    )
    task = Task.objects.get(pk=submit(api).json()["id"])
    task.price = price
    usage = {"prompt_tokens": 1000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 800}}
    cost, basis, tokens = task_charge(task, usage=usage)
    assert cost == (Decimal(200) * 10 + Decimal(800) * 1) / 1_000_000
    assert (basis, tokens) == ("provider_usage", 1000)


def test_a_broken_stream_is_charged_for_what_was_delivered(tenant, api, openai_channel):
    task = Task.objects.get(pk=submit(api, prompt="x" * 300).json()["id"])
    cost, basis, _ = task_charge(task, usage=None, delivered_tokens=50)
    assert basis == "delivered_estimate"
    assert cost == (Decimal(100) * 1 + Decimal(50) * 2) / 1_000_000  # ~100 input tokens + 50 delivered
    assert task_charge(task, usage=None, delivered_tokens=0) == (Decimal(0), "nothing_delivered", 0)


def test_settlement_records_its_basis(api, openai_channel):
    task_id = submit(api).json()["id"]
    task_run(task_id)
    task = Task.objects.get(pk=task_id)
    assert task.charge_basis == "provider_usage"
    assert LedgerEntry.objects.get(task=task, kind="capture").memo == "provider_usage"


def test_the_ledger_refuses_edits_and_deletions(tenant):
    line = LedgerEntry.objects.get(tenant=tenant)
    for statement in (
        "UPDATE tenants_ledgerentry SET amount = 0 WHERE id = %s",
        "DELETE FROM tenants_ledgerentry WHERE id = %s",
    ):
        with (
            pytest.raises(ProgrammingError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [line.pk])
    assert LedgerEntry.objects.get(pk=line.pk).amount == Decimal(100)


def test_key_counters_follow_its_tasks(api, issued_key, openai_channel):
    task_id = submit(api, max_tokens=100).json()["id"]
    key = ApiKey.objects.get(pk=issued_key.api_key.pk)
    assert key.held == Task.objects.get(pk=task_id).credits_reserved
    task_run(task_id)
    key.refresh_from_db()
    assert key.held == 0 and key.period_spend == Task.objects.get(pk=task_id).credits_charged


def test_budget_resets_and_window_pruning_are_scheduled_in_the_cluster():
    from django.utils.module_loading import import_string
    from django_q.models import Schedule

    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert {"tenants.jobs.budgets_reset_job", "tenants.jobs.rate_events_prune_job"} <= funcs
    for func in funcs:
        import_string(func)  # every scheduled job names a real function


def chat(client, **body):
    messages = [{"role": "user", "content": "hello"}]
    return client.post(
        "/v1/llm/generations", {"model": "fake-model", "messages": messages, **body}, format="json"
    )


def test_each_end_user_has_the_tenants_end_user_budget_and_spends_it_until_the_period_resets(
    api, tenant, openai_channel
):
    tenant_update(tenant=tenant, end_user_budget=Decimal("0.005"), budget_period="day")
    key_cache.clear()  # the tenant as admission sees it, at once
    # each request holds about 0.002 credits (1000 output tokens at 2 per million)
    first = chat(api, max_tokens=1000, user="alice")
    assert first.status_code == 200
    assert chat(api, max_tokens=1000, user="alice").status_code == 200
    refused = chat(api, max_tokens=1000, user="alice")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
    assert "'alice'" in refused.json()["error"]["message"]
    assert chat(api, max_tokens=1000, user="bob").status_code == 200  # another end user's own budget
    assert chat(api, max_tokens=1000).status_code == 200  # a request naming nobody is the tenant's

    task_run(first.json()["id"])
    alice = EndUserSpend.objects.get(tenant=tenant, end_user="alice")
    charged = Task.objects.get(pk=first.json()["id"]).credits_charged
    assert (
        alice.period_spend == charged
        and alice.held
        == Task.objects.filter(end_user="alice", status="pending").aggregate(held=Sum("credits_reserved"))[
            "held"
        ]
    )
    assert not list(billing_discrepancies(tenant=tenant))

    EndUserSpend.objects.filter(pk=alice.pk).update(period_started_at=timezone.now() - timedelta(days=1))
    assert budgets_reset() >= 1
    alice.refresh_from_db()
    assert alice.period_spend == 0
    assert chat(api, max_tokens=1000, user="alice").status_code == 200
