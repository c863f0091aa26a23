""" "Retry as a new task" in the admin admits through the API's own admission, and refuses as the API does."""

from decimal import Decimal

import pytest
from django.utils import timezone

from tasks.jobs import task_run
from tasks.models import Task
from tenants.authentication import key_cache
from tenants.models import ApiKey, Tenant
from tenants.services import limits_set
from tests.tenants.writes import admin_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_task(api, openai_channel, fake_openai) -> Task:
    fake_openai.configure(status=400)
    task_id = api.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "again"}, format="json"
    ).json()["id"]
    task_run(task_id)
    fake_openai.reset()
    task = Task.objects.get(pk=task_id)
    assert task.status == "failed"
    return task


def retry(client, task: Task) -> list[str]:
    response = client.post(
        "/admin/tasks/task/", {"action": "retry_as_new", "_selected_action": [task.pk]}, follow=True
    )
    return [str(message) for message in response.context["messages"]]


def api_answer(api) -> tuple[int, str]:
    key_cache.clear()  # as every process does within KEY_CACHE_SECONDS
    response = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
    return response.status_code, response.json()["error"]["code"]


def refuse(task: Task, why: str) -> None:
    if why == "revoked":
        ApiKey.objects.filter(pk=task.api_key_id).update(revoked_at=timezone.now())
    elif why == "expired":
        ApiKey.objects.filter(pk=task.api_key_id).update(expires_at=timezone.now())
    elif why == "suspended":
        Tenant.objects.filter(pk=task.tenant_id).update(status="suspended")
    elif why == "budget":
        limits_set(target=task.tenant, budget=Decimal("0.000001"))
    elif why == "balance":
        Tenant.objects.filter(pk=task.tenant_id).update(balance=Decimal(0))


@pytest.mark.parametrize(
    ("why", "status", "code"),
    [
        ("revoked", 401, "invalid_api_key"),
        ("expired", 401, "expired_api_key"),
        ("suspended", 403, "tenant_suspended"),
        ("budget", 402, "budget_exceeded"),
        ("balance", 402, "insufficient_balance"),
    ],
)
def test_retry_is_refused_with_the_apis_reason(api, failed_task, why, status, code):
    client = admin_client("admin", failed_task.tenant)
    refuse(failed_task, why)
    assert api_answer(api) == (status, code)  # what the API says to the same key now

    messages = retry(client, failed_task)
    assert any(m.startswith(f"{failed_task.pk}: not retried") and f"({status} {code})" in m for m in messages)
    assert Task.objects.count() == 1  # no new task, no hold


def test_a_retry_the_api_would_admit_makes_a_new_pending_task(failed_task):
    messages = retry(admin_client(), failed_task)
    retried = Task.objects.exclude(pk=failed_task.pk).get()
    assert retried.status == "pending" and retried.api_key_id == failed_task.api_key_id
    assert f"{failed_task.pk} resubmitted as {retried.pk}" in messages
