"""Admission's catalog lookup: one statement in the common case, the same answers in every other."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks.models import Channel, Task
from tasks.services import price_set

pytestmark = pytest.mark.django_db


def submit(api, body=None):
    return api.post("/v1/llm/generations", body or {"model": "fake-model", "prompt": "Hi"}, format="json")


def test_a_submit_reads_the_catalog_in_one_statement_before_its_transaction(api, openai_channel):
    submit(api)  # the key's lookup is cached from here on, as on a busy key
    with CaptureQueriesContext(connection) as captured:
        assert submit(api).status_code == 200
    statements = [query["sql"].split()[0] for query in captured.captured_queries]
    # model, price, overrides and channels in one; then the transaction: task, its queue row, two holds
    # (last, as they lock the tenant's row), ledger line
    assert statements[:7] == ["SELECT", "SAVEPOINT", "INSERT", "INSERT", "UPDATE", "UPDATE", "INSERT"]


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
