"""Admission: the catalog read, then one statement that holds, inserts and enqueues; the same answers."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from rest_framework.test import APIClient

from tasks.models import Channel, Task
from tasks.services import price_set
from tenants.models import ApiKey, LedgerEntry
from tenants.services import apikey_issue
from tests.helpers import database_dump

pytestmark = pytest.mark.django_db


def submit(api, body=None):
    return api.post("/v1/llm/generations", body or {"model": "fake-model", "prompt": "Hi"}, format="json")


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the request
def test_a_submit_is_two_statements_the_catalog_read_and_one_admission(
    api, openai_channel, tenant, monkeypatch
):
    # a queue of this test's own, so that a worker cluster running in this session takes none of its jobs
    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"admission-{uuid.uuid4().hex[:8]}")
    submit(api)  # the key's lookup is cached from here on, as on a busy key
    with CaptureQueriesContext(connection) as captured:
        answer = submit(api)
    assert answer.status_code == 200
    statements = [query["sql"].split()[0] for query in captured.captured_queries]
    # model, price, overrides and channels in one; then one statement, committed on its own, that holds
    # the credits, inserts the task, its ledger line and its queue row: no BEGIN, no COMMIT
    assert statements == ["SELECT", "WITH"]

    task = Task.objects.get(pk=answer.json()["id"])
    reserved = task.credits_reserved
    assert LedgerEntry.objects.get(task=task).held_change == reserved
    queued = [SignedPackage.loads(row.payload) for row in OrmQ.objects.filter(key=Conf.CLUSTER_NAME)]
    assert ("tasks.jobs.task_run", (task.id,)) in [(job["func"], job["args"]) for job in queued]
    tenant.refresh_from_db()
    assert tenant.held == 2 * reserved  # both submits' holds
    assert ApiKey.objects.get(pk=task.api_key_id).held == 2 * reserved


def test_a_key_without_budget_room_is_refused_and_nothing_is_written_not_even_the_tenants_hold(
    tenant, openai_channel
):
    capped = apikey_issue(tenant=tenant, budget=Decimal("0.001"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {capped.secret}")
    assert client.get("/v1/models").status_code == 200  # the key's last use is recorded before the dump
    before = database_dump()
    refused = submit(client, {"model": "fake-model", "prompt": "Hi", "max_tokens": 1000})
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["message"].startswith("This key's monthly budget of 0.001000 credits has no room")
    assert database_dump() == before


def test_the_groups_own_price_wins_over_the_price_for_every_group(api, openai_channel, tenant):
    price_set(model_name="fake-model", group=tenant.group, input_per_million=Decimal(7), output_per_million=7)
    price_set(model_name="fake-model", input_per_million=Decimal(1), output_per_million=Decimal(3))
    task = submit(api).json()
    assert Task.objects.get(pk=task["id"]).price.input_per_million == Decimal(7)


def test_a_channel_whose_cooldown_is_over_still_admits_and_one_cooling_down_refuses(api, openai_channel):
    Channel.objects.update(circuit_state="open", circuit_open_until=timezone.now() + timedelta(minutes=1))
    refused = submit(api)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_available_channel"

    Channel.objects.update(circuit_open_until=timezone.now() - timedelta(seconds=1))
    assert submit(api).status_code == 200
