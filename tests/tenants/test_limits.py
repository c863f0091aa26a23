"""Per-minute and concurrency limits through the API, in one process (tests/tenants/test_concurrency.py
proves them across processes)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tasks.jobs import task_run
from tenants.limits import rate_events_prune
from tenants.models import RateEvent
from tenants.services import apikey_issue, limits_set

pytestmark = pytest.mark.django_db


def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def submit(client, **body):
    return client.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi", **body}, format="json")


def test_rpm_headers_count_down_then_429_with_retry_after(tenant, openai_channel):
    client = client_for(apikey_issue(tenant=tenant, rpm=3).secret)
    remaining = []
    for _ in range(3):
        ok = submit(client)
        assert ok.status_code == 200 and ok["X-RateLimit-Limit"] == "3"
        assert 0 < int(ok["X-RateLimit-Reset"]) <= 60
        remaining.append(ok["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = submit(client)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 0 < int(refused["Retry-After"]) <= 60 and refused["X-RateLimit-Remaining"] == "0"


def test_tenant_rpm_is_shared_by_its_keys(tenant, openai_channel):
    limits_set(target=tenant, rpm=2)
    first, second = (client_for(apikey_issue(tenant=tenant).secret) for _ in range(2))
    assert submit(first).status_code == submit(second).status_code == 200
    assert submit(first).json()["error"]["code"] == "rate_limit_exceeded"


def test_tpm_counts_requested_tokens_and_settles_to_actual_use(tenant, openai_channel):
    client = client_for(apikey_issue(tenant=tenant, tpm=1000).secret)
    first = submit(client, max_tokens=900)  # ~1 input token + 900 requested
    assert first.status_code == 200
    refused = submit(client, max_tokens=900)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "token_limit_exceeded"
    assert "Retry-After" in refused

    task_run(first.json()["id"])  # the upstream used a handful of tokens, not 900
    assert RateEvent.objects.get(task_id=first.json()["id"]).tokens < 20
    assert submit(client, max_tokens=900).status_code == 200


def test_concurrency_limit_counts_unfinished_tasks(tenant, openai_channel):
    client = client_for(apikey_issue(tenant=tenant, max_concurrency=2).secret)
    ids = [submit(client).json()["id"] for _ in range(2)]
    refused = submit(client)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "concurrency_limit_exceeded"
    assert refused["Retry-After"] == "1"
    task_run(ids[0])
    assert submit(client).status_code == 200


def test_no_limits_means_no_headers_and_no_counting(api, openai_channel):
    response = submit(api)
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response
    assert not RateEvent.objects.exists()


def test_old_window_events_are_pruned(tenant, openai_channel):
    client = client_for(apikey_issue(tenant=tenant, rpm=5).secret)
    submit(client)
    submit(client)
    RateEvent.objects.filter(pk=RateEvent.objects.order_by("at").first().pk).update(
        at=timezone.now() - timedelta(minutes=2)
    )
    assert rate_events_prune() == 1
    assert RateEvent.objects.count() == 1
