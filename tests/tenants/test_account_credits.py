from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tasks.jobs import task_run
from tenants.services import apikey_issue

pytestmark = pytest.mark.django_db


def test_credits_show_balance_holds_and_spend_for_tenant_and_key(api, tenant, issued_key, openai_channel):
    fresh = api.get("/v1/account/credits").json()
    assert fresh["tenant"] | {"period_start": None} == {
        "balance": "100",
        "held": "0",
        "available": "100",
        "user_group": "default",
        "period": "month",
        "period_start": None,
        "spend": "0",
        "budget": None,
    }
    assert fresh["key"]["id"] == issued_key.api_key.key_id and fresh["key"]["spend"] == "0"

    pending = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "a"}, format="json").json()
    held = Decimal(pending["usage"]["credits_reserved"])
    during = api.get("/v1/account/credits").json()["tenant"]
    assert Decimal(during["held"]) == held and Decimal(during["available"]) == 100 - held

    task_run(pending["id"])
    charged = Decimal(api.get(f"/v1/tasks/{pending['id']}").json()["usage"]["credits_charged"])
    after = api.get("/v1/account/credits").json()
    assert Decimal(after["tenant"]["balance"]) == 100 - charged
    assert after["tenant"]["held"] == "0"
    assert Decimal(after["tenant"]["spend"]) == Decimal(after["key"]["spend"]) == charged


def test_key_spend_counts_only_that_key(api, tenant, openai_channel):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "a"}, format="json").json()[
        "id"
    ]
    task_run(task_id)
    sibling = APIClient()
    sibling.credentials(HTTP_AUTHORIZATION=f"Bearer {apikey_issue(tenant=tenant).secret}")
    credits = sibling.get("/v1/account/credits").json()
    assert credits["key"]["spend"] == "0"
    assert Decimal(credits["tenant"]["spend"]) > 0
