"""The must-show of the one write path: an operator editing a tenant and its key in the admin while that
tenant's tasks hold and settle credits loses no money, and every edit that changed something is audited.

Real PostgreSQL and real processes: four client threads submit over HTTP to the two web servers (the
API's admission: task_submit, credits_hold), the worker cluster calls the fake provider and settles, and
the operator's edits go through the admin in this process (Django's test client, a superuser). Before
the admin wrote through services, TenantAdmin's full-row save wrote back the balance and held it had
loaded, and billing_audit then failed."""

import itertools
import threading
import time
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from tasks.models import Task
from tenants.models import ApiKey, AuditEvent, LedgerEntry, Tenant
from tenants.services import apikey_issue, tenant_create
from tests.tenants.writes import admin_client, tenant_form

pytestmark = pytest.mark.e2e

TASKS = 200
CLIENTS = 4
TENANT_EDITS = 20
KEY_EDITS = 6
ALLOW_LISTS = ("fake-model, fake-*", "fake-model")  # both keep the model the tasks use


def submit(urls: list[str], secret: str, count: int, accepted: list[str]) -> None:
    """`count` submits, one after another, alternating between the web servers; each holds credits."""
    with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        for n, url in zip(range(count), itertools.cycle(urls), strict=False):
            body = {"model": "fake-model", "prompt": f"task {n}", "max_tokens": 20}
            response = client.post(f"{url}/v1/llm/generations", json=body)
            assert response.status_code == 200, response.text
            accepted.append(response.json()["id"])


def edit_in_the_admin(client, tenant: Tenant, api_key: ApiKey) -> None:
    """20 saves of the tenant's change form, each renaming it, one save that changes nothing, and
    KEY_EDITS edits of the key's allow-list, interleaved."""
    for n in range(TENANT_EDITS):
        response = client.post(
            f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, name=f"Acme {n}")
        )
        assert response.status_code == 302, response.content[:500]
        if n < KEY_EDITS:
            form = {"name": "load", "allowed_models_text": ALLOW_LISTS[n % 2], "allowed_ips_text": ""}
            response = client.post(
                f"/admin/tenants/apikey/{api_key.pk}/change/", form | {"budget_period": "month"}
            )
            assert response.status_code == 302, response.content[:500]
    unchanged = client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant))
    assert unchanged.status_code == 302


def in_thread(target, *args, start: threading.Barrier, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            start.wait()
            target(*args)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_admin_edits_while_200_tasks_hold_and_settle_lose_no_money_and_are_all_audited(stack, stack_api):
    """stack_api serves fake-model from the stack's fake provider; the tenant here is a new one."""
    # Each call takes a while, so holds are outstanding while the operator saves the forms.
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 0.1})
    tenant = tenant_create(slug="acme", name="Acme", credits=Decimal(1000))
    issued = apikey_issue(tenant=tenant, name="load")
    client = admin_client()
    events_before = AuditEvent.objects.count()

    start = threading.Barrier(CLIENTS + 1)
    errors: list[BaseException] = []
    accepted: list[str] = []
    threads = [
        in_thread(
            submit, stack.web_urls, issued.secret, TASKS // CLIENTS, accepted, start=start, errors=errors
        )
        for _ in range(CLIENTS)
    ]
    threads.append(in_thread(edit_in_the_admin, client, tenant, issued.api_key, start=start, errors=errors))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == [] and len(accepted) == TASKS
    deadline = time.monotonic() + 120
    while Task.objects.filter(tenant=tenant, status__in=Task.UNFINISHED).exists():
        assert time.monotonic() < deadline, "the cluster did not settle every task within 120 s"
        time.sleep(0.05)

    out = StringIO()
    call_command("billing_audit", stdout=out)  # raises CommandError (exit 1) on any discrepancy
    assert "books balance" in out.getvalue()

    assert Task.objects.filter(tenant=tenant, status="completed").count() == TASKS
    tenant.refresh_from_db()
    charged = sum(Task.objects.filter(tenant=tenant).values_list("credits_charged", flat=True))
    assert charged > 0 and tenant.held == 0 and tenant.balance == Decimal(1000) - charged
    assert LedgerEntry.objects.filter(tenant=tenant, kind="capture").count() == TASKS
    assert tenant.name == f"Acme {TENANT_EDITS - 1}"
    assert ApiKey.objects.get(pk=issued.api_key.pk).allowed_models == ["fake-model"]

    events = AuditEvent.objects.order_by("id")[events_before:]
    assert len(events) == TENANT_EDITS + KEY_EDITS  # the save that changed nothing left none
    assert [e.action for e in events].count("tenant.update") == TENANT_EDITS
    assert [e.action for e in events].count("key.update") == KEY_EDITS
    assert all(e.actor == "admin:root" and set(e.details) == {"before", "after"} for e in events)
