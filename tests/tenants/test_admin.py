"""The admin site's rules, through Django's test client (tests/test_admin_browser.py drives a browser)."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tasks.models import Channel
from tasks.services import channel_add
from tenants.authentication import key_authenticate
from tenants.models import ApiKey, AuditEvent, LedgerEntry, Membership, Tenant
from tenants.services import apikey_issue, tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(tenant) -> Tenant:
    return tenant


@pytest.fixture
def globex() -> Tenant:
    return tenant_create(slug="globex", credits=Decimal(50))


def shown_secret(response) -> str:
    """The secret on the one-time key page."""
    page = response.content.decode()
    return page.split('id="new-key-secret"')[1].split(">", 1)[1].split("<", 1)[0].strip()


def login(role: str | None, tenant: Tenant | None = None) -> Client:
    if role is None:
        user = User.objects.create_superuser("root", password="x")
    else:
        user = User.objects.create_user(f"{role}-{tenant.slug}", password="x", is_staff=True)
        Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_a_tenant_admin_sees_only_its_tenant(acme, globex):
    mine, theirs = apikey_issue(tenant=acme, name="mine"), apikey_issue(tenant=globex, name="theirs")
    client = login("admin", acme)
    keys = client.get("/admin/tenants/apikey/").content.decode()
    assert mine.api_key.key_id in keys and theirs.api_key.key_id not in keys
    other_line = LedgerEntry.objects.filter(tenant=globex).first()
    for url in (
        f"/admin/tenants/apikey/{theirs.api_key.pk}/change/",
        f"/admin/tenants/ledgerentry/{other_line.pk}/change/",
        f"/admin/tenants/tenant/{globex.pk}/change/",
    ):
        response = client.get(url, follow=True)
        # Django admin answers an object outside the user's queryset as if it did not exist
        assert response.redirect_chain[-1][0] == "/admin/", url
        assert "doesn\u2019t exist" in response.content.decode()  # Django writes a typographic apostrophe
        assert theirs.api_key.key_id not in response.content.decode()
    for platform_page in (
        "/admin/tasks/channel/",
        "/admin/tasks/model/",
        "/admin/tasks/price/",
        "/admin/auth/user/",
    ):
        assert client.get(platform_page).status_code == 403


def test_a_tenant_admin_issues_a_key_whose_secret_is_shown_once_and_works(acme):
    client = login("admin", acme)
    response = client.post(
        "/admin/tenants/apikey/add/", {"tenant": acme.pk, "name": "from the admin", "budget_period": "month"}
    )
    # the secret is the answer to the POST itself, not a page to come back to
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    assert key_authenticate(secret).tenant == acme
    key = ApiKey.objects.get(name="from the admin")
    assert secret not in client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert secret not in client.get("/admin/tenants/apikey/").content.decode()
    assert AuditEvent.objects.get(action="key.issue").actor.startswith("admin:")


def test_rotating_in_the_admin_is_a_post_that_answers_with_the_new_secret(acme, issued_key):
    client = login("admin", acme)
    url = f"/admin/tenants/apikey/{issued_key.api_key.pk}/rotate/"
    before = ApiKey.objects.get(pk=issued_key.api_key.pk).digest
    confirm = client.get(url)
    assert confirm.status_code == 200 and 'method="post"' in confirm.content.decode()
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).digest == before  # a GET never rotates
    response = client.post(url)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    assert secret != issued_key.secret and key_authenticate(secret).pk == issued_key.api_key.pk
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).digest != before


def test_rotation_needs_the_csrf_token(acme, issued_key):
    user = User.objects.create_user("csrf-admin", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=acme, role="admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = ApiKey.objects.get(pk=issued_key.api_key.pk).digest
    assert client.post(f"/admin/tenants/apikey/{issued_key.api_key.pk}/rotate/").status_code == 403
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).digest == before


def test_a_key_cannot_exceed_its_tenants_limits(acme):
    Tenant.objects.filter(pk=acme.pk).update(rpm=100)
    client = login("admin", acme)
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": acme.pk, "name": "greedy", "rpm": 500, "budget_period": "month"},
    )
    assert response.status_code == 200 and "own limit is 100" in response.content.decode()
    assert not ApiKey.objects.filter(name="greedy").exists()


def test_a_viewer_reads_but_cannot_issue_or_revoke(acme, issued_key):
    client = login("viewer", acme)
    assert issued_key.api_key.key_id in client.get("/admin/tenants/apikey/").content.decode()
    assert client.get("/admin/tenants/apikey/add/").status_code == 403
    response = client.post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [issued_key.api_key.pk]}
    )
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).revoked_at is None
    assert response.status_code in (200, 302, 403)


def test_revoking_in_the_admin_refuses_the_key(acme, issued_key):
    client = login("admin", acme)
    client.post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [issued_key.api_key.pk]}
    )
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).revoked_at is not None


def test_platform_staff_top_up_writes_a_ledger_line(acme):
    client = login(None)
    response = client.post(f"/admin/tenants/tenant/{acme.pk}/top-up/", {"amount": "12.5", "memo": "wire 77"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.balance == Decimal("112.5")
    assert LedgerEntry.objects.filter(tenant=acme, kind="topup", memo="wire 77").exists()
    assert (
        login("admin", acme).post(f"/admin/tenants/tenant/{acme.pk}/top-up/", {"amount": "1"}).status_code
        == 403
    )


def test_the_upstream_key_is_write_only(fake_openai):
    channel = channel_add(
        name="openai",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="sk-upstream-abc",
        model_names=["gpt-4o"],
    )
    client = login(None)
    page = client.get(f"/admin/tasks/channel/{channel.pk}/change/").content.decode()
    assert "sk-upstream-abc" not in page
    form = {
        "name": "openai",
        "provider": "openai",
        "base_url": fake_openai.base_url,
        "served_models": [channel.served_models.get().pk],
        "model_mapping": "{}",
        "priority": 0,
        "weight": 1,
        "enabled": "on",
        "new_api_key": "",
    }
    client.post(f"/admin/tasks/channel/{channel.pk}/change/", form)
    assert Channel.objects.get(pk=channel.pk).api_key == "sk-upstream-abc"  # blank keeps the stored key
    client.post(f"/admin/tasks/channel/{channel.pk}/change/", form | {"new_api_key": "sk-rotated"})
    assert Channel.objects.get(pk=channel.pk).api_key == "sk-rotated"


def test_failed_tasks_can_be_retried_as_new_tasks(api, acme, openai_channel, fake_openai):
    from tasks.jobs import task_run
    from tasks.models import Task

    fake_openai.configure(status=400)
    task_id = api.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "again"}, format="json"
    ).json()["id"]
    task_run(task_id)
    client = login("admin", acme)
    client.post("/admin/tasks/task/", {"action": "retry_as_new", "_selected_action": [task_id]})
    retried = Task.objects.exclude(pk=task_id).get()
    assert (
        retried.status == "pending"
        and retried.request["messages"] == Task.objects.get(pk=task_id).request["messages"]
    )


def test_channel_health_counts_only_the_last_hour(api, openai_channel):
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import Task, TaskAttempt

    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json").json()[
        "id"
    ]
    task = Task.objects.get(pk=task_id)
    now = timezone.now()
    for number, (age, error, latency) in enumerate(
        [(1, "", 100), (2, "upstream_error", 300), (120, "x", 9999)]
    ):
        started = now - timedelta(minutes=age)
        TaskAttempt.objects.create(
            task=task,
            channel=openai_channel,
            number=number + 1,
            started_at=started,
            finished_at=started,
            error_code=error,
            latency_ms=latency,
        )
    page = login(None).get("/admin/tasks/channel/").content.decode()
    assert "50% of 2" in page and "200 ms" in page  # the two-hour-old attempt is outside the window
