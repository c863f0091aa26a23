"""The admin's permission matrix: every page, filter, export and action, for users who hold different roles
in two tenants, through Django's test client against the real database.

Each user below sees and changes exactly what its role in *the object's* tenant allows, and nothing of a
tenant where it has no role: 0 leaks. `ROLE_GRANTS` restates the table of tenants/access.py on purpose, so
a change to who may do what has to change this test too.
"""

import csv
import io
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tasks.models import Channel, RollupWatermark, Task, TaskAttempt, UsageRollup
from tasks.rollups import usage_rollup
from tenants.models import ApiKey, AuditEvent, LedgerEntry, Membership, ModelRuleOverride, Tenant
from tenants.services import SYSTEM, IssuedKey, apikey_issue, audit_record, credits_topup, tenant_create

pytestmark = pytest.mark.django_db

TENANTS = ("acme", "globex")
ROLE_GRANTS = {
    "read": {"owner", "admin", "billing", "member", "viewer"},
    "money": {"owner", "admin", "billing"},
    "manage_keys": {"owner", "admin"},
    "retry": {"owner", "admin"},
    "audit": {"owner", "admin"},
    "top_up": set(),  # platform staff only
}
# user name -> its role in each tenant; None is platform staff (a superuser).
USERS: dict[str, dict[str, str] | None] = {
    "admin-of-acme-viewer-of-globex": {"acme": "admin", "globex": "viewer"},
    "billing-of-acme-owner-of-globex": {"acme": "billing", "globex": "owner"},
    "member-of-acme-only": {"acme": "member"},
    "outsider": {},
    "platform-staff": None,
}
users = pytest.mark.parametrize("user", USERS)


def allowed(user: str, perm: str) -> set[str]:
    """The tenants in which `user` may `perm`."""
    roles = USERS[user]
    if roles is None:
        return set(TENANTS)
    return {slug for slug, role in roles.items() if role in ROLE_GRANTS[perm]}


@dataclass
class Side:
    """One tenant's rows, each with a marker only that tenant's pages can show."""

    tenant: Tenant
    key: IssuedKey
    failed_task: str
    error_code: str
    ledger_line: LedgerEntry
    audit_event: AuditEvent
    membership: Membership
    override: ModelRuleOverride

    @property
    def name(self) -> str:
        return self.tenant.name


@pytest.fixture
def world(openai_channel) -> dict[str, Side]:
    sides = {}
    for slug, error_code in (("acme", "upstream_timeout"), ("globex", "upstream_rejected")):
        tenant = tenant_create(slug=slug, name=f"{slug.title()} Incorporated")
        ledger_line = credits_topup(tenant=tenant, amount=Decimal(100), memo=f"wire-{slug}-memo")
        key = apikey_issue(tenant=tenant, name=f"{slug}-key")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.secret}")
        submitted = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi"}, format="json")
        task_id = submitted.json()["id"]
        # failed an hour ago, as the relay would have left it (no worker runs in these tests)
        Task.objects.filter(pk=task_id).update(
            status=Task.Status.FAILED, error_code=error_code, finished_at=timezone.now() - timedelta(hours=1)
        )
        staffer = User.objects.create_user(f"staffer-of-{slug}")
        sides[slug] = Side(
            tenant=tenant,
            key=key,
            failed_task=task_id,
            error_code=error_code,
            ledger_line=ledger_line,
            audit_event=audit_record(
                actor=SYSTEM, action="test.marker", tenant=tenant, target=f"audit-marker-{slug}"
            ),
            membership=Membership.objects.create(user=staffer, tenant=tenant, role="member"),
            override=ModelRuleOverride.objects.create(tenant=tenant, model_pattern=f"{slug}-only-*"),
        )
    usage_rollup()
    return sides


def login(user: str) -> Client:
    roles = USERS[user]
    if roles is None:
        account = User.objects.create_superuser(user, email="", password=None)
    else:
        account = User.objects.create_user(user, is_staff=True)  # no password: force_login, and fast
        for slug, role in roles.items():
            Membership.objects.create(user=account, tenant=Tenant.objects.get(slug=slug), role=role)
    client = Client()
    client.force_login(account)
    return client


def page(response) -> str:
    return response.content.decode()


def opened(user: str, url: str, perm: str) -> tuple[str, set[str]] | None:
    """The page's HTML and the tenants in which the user may `perm`; None, once the page answered 403,
    when there are none."""
    response = login(user).get(url)
    visible = allowed(user, perm)
    if not visible:
        assert response.status_code == 403
        return None
    assert response.status_code == 200
    return page(response), visible


# (changelist URL, the permission it needs, the marker of a tenant's row on it)
CHANGELISTS = [
    ("/admin/tasks/task/", "read", lambda side: side.failed_task),
    ("/admin/tenants/apikey/", "read", lambda side: side.key.api_key.key_id),
    ("/admin/tenants/membership/", "read", lambda side: side.membership.user.username),
    ("/admin/tenants/modelruleoverride/", "read", lambda side: side.override.model_pattern),
    ("/admin/tasks/task/failures/", "read", lambda side: side.error_code),
    ("/admin/tenants/tenant/", "money", lambda side: side.name),
    ("/admin/tenants/ledgerentry/", "money", lambda side: side.ledger_line.memo),
    ("/admin/tasks/task/usage/", "money", lambda side: side.key.api_key.key_id),
    ("/admin/tenants/auditevent/", "audit", lambda side: side.audit_event.target),
]


@users
@pytest.mark.parametrize(("url", "perm", "marker"), CHANGELISTS, ids=[c[0] for c in CHANGELISTS])
def test_lists_and_dashboards_show_only_the_tenants_the_role_allows(world, user, url, perm, marker):
    if (seen := opened(user, url, perm)) is None:
        return
    html, visible = seen
    for slug, side in world.items():
        assert (marker(side) in html) == (slug in visible), f"{user} {url} {slug}"


# (change page of a tenant's object, the permission to read it)
CHANGE_PAGES = [
    (lambda s: f"/admin/tasks/task/{s.failed_task}/change/", "read"),
    (lambda s: f"/admin/tenants/apikey/{s.key.api_key.pk}/change/", "read"),
    (lambda s: f"/admin/tenants/membership/{s.membership.pk}/change/", "read"),
    (lambda s: f"/admin/tenants/modelruleoverride/{s.override.pk}/change/", "read"),
    (lambda s: f"/admin/tenants/tenant/{s.tenant.pk}/change/", "money"),
    (lambda s: f"/admin/tenants/ledgerentry/{s.ledger_line.pk}/change/", "money"),
    (lambda s: f"/admin/tenants/auditevent/{s.audit_event.pk}/change/", "audit"),
]


@users
@pytest.mark.parametrize(
    ("url", "perm"),
    CHANGE_PAGES,
    ids=["task", "key", "membership", "override", "tenant", "ledger-line", "audit-event"],
)
@pytest.mark.parametrize("slug", TENANTS)
def test_change_pages_by_url_open_only_where_the_role_reads(world, user, url, perm, slug):
    response = login(user).get(url(world[slug]))
    if slug in allowed(user, perm):
        assert response.status_code == 200
        assert world[slug].tenant.slug in page(response)
    elif allowed(user, perm):
        # Django admin answers a row outside the user's queryset as one that does not exist
        assert response.status_code == 302 and response.url == "/admin/"
    else:
        assert response.status_code == 403


@users
def test_the_task_filters_offer_only_tenants_and_keys_the_user_reads(world, user):
    if (seen := opened(user, "/admin/tasks/task/", "read")) is None:
        return
    html, visible = seen
    assert {int(pk) for pk in re.findall(r"[?&;]tenant=(\d+)", html)} == {
        world[slug].tenant.pk for slug in visible
    }
    assert {int(pk) for pk in re.findall(r"[?&;]key=(\d+)", html)} == {
        world[slug].key.api_key.pk for slug in visible
    }


@users
def test_the_key_form_offers_only_the_tenants_the_user_manages(world, user):
    if (seen := opened(user, "/admin/tenants/apikey/add/", "manage_keys")) is None:
        return
    html, managed = seen
    select = html.split('name="tenant"', 1)[1].split("</select>", 1)[0]
    offered = {int(pk) for pk in re.findall(r'<option value="(\d+)"', select)}
    assert offered == {world[slug].tenant.pk for slug in managed}


@users
@pytest.mark.parametrize("slug", TENANTS)
def test_a_key_is_issued_and_its_secret_shown_only_by_a_manager_of_its_tenant(world, user, slug):
    response = login(user).post(
        "/admin/tenants/apikey/add/",
        {"tenant": world[slug].tenant.pk, "name": "issued-here", "budget_period": "month"},
    )
    issued = ApiKey.objects.filter(name="issued-here", tenant=world[slug].tenant).exists()
    if slug in allowed(user, "manage_keys"):
        assert response.status_code == 200 and 'id="new-key-secret"' in page(response) and issued
    else:
        assert response.status_code in (200, 403) and not issued  # 200: the form refuses the tenant
        assert 'id="new-key-secret"' not in page(response)


@users
def test_the_ledger_export_holds_only_the_lines_of_tenants_whose_money_the_user_reads(world, user):
    response = login(user).get("/admin/tenants/ledgerentry/export-csv/")
    visible = allowed(user, "money")
    if not visible:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows and {row["tenant"] for row in rows} == visible


@users
@pytest.mark.parametrize("slug", TENANTS)
def test_only_platform_staff_top_up(world, user, slug):
    client, tenant = login(user), world[slug].tenant
    balance = Tenant.objects.get(pk=tenant.pk).balance
    url = f"/admin/tenants/tenant/{tenant.pk}/top-up/"
    may = slug in allowed(user, "top_up")
    assert client.get(url).status_code == (200 if may else 403)
    response = client.post(url, {"amount": "5", "memo": "matrix"})
    assert response.status_code == (302 if may else 403)
    assert LedgerEntry.objects.filter(tenant=tenant, memo="matrix").exists() == may
    assert Tenant.objects.get(pk=tenant.pk).balance == balance + (Decimal(5) if may else 0)


@users
@pytest.mark.parametrize("slug", TENANTS)
def test_only_a_manager_of_the_keys_tenant_changes_or_rotates_it(world, user, slug):
    client, key = login(user), world[slug].key.api_key
    may = slug in allowed(user, "manage_keys")
    if slug in allowed(user, "read"):
        detail = page(client.get(f"/admin/tenants/apikey/{key.pk}/change/"))
        # the save button and the rotate action are offered only where they work
        assert ('name="_save"' in detail) == may and ("/rotate/" in detail) == may
    response = client.post(
        f"/admin/tenants/apikey/{key.pk}/change/",
        {"name": "renamed", "budget_period": "month", "allowed_models_text": "", "allowed_ips_text": ""},
    )
    assert response.status_code == (302 if may else 403)
    assert (ApiKey.objects.get(pk=key.pk).name == "renamed") == may

    rotate = f"/admin/tenants/apikey/{key.pk}/rotate/"
    assert client.get(rotate).status_code == (200 if may else 403)
    response = client.post(rotate)
    assert response.status_code == (200 if may else 403)
    assert ('id="new-key-secret"' in page(response)) == may
    assert (ApiKey.objects.get(pk=key.pk).digest != key.digest) == may


def assert_left_alone_said(response, user: str, perm: str) -> None:
    """A bulk action over rows of two tenants says how many it did not touch."""
    if allowed(user, perm):
        left_alone = len(allowed(user, "read") - allowed(user, perm))
        said = f"{left_alone} of the selected rows left alone" in page(response)
        assert said == bool(left_alone)


@users
def test_bulk_revoke_revokes_only_keys_of_tenants_the_user_manages(world, user):
    selected = [side.key.api_key.pk for side in world.values()]
    response = login(user).post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": selected}, follow=True
    )
    assert_left_alone_said(response, user, "manage_keys")
    revoked = {key.tenant.slug for key in ApiKey.objects.filter(pk__in=selected, revoked_at__isnull=False)}
    assert revoked == allowed(user, "manage_keys")


@users
def test_retry_as_new_makes_tasks_only_for_tenants_where_the_role_may_retry(world, user):
    selected = [side.failed_task for side in world.values()]
    response = login(user).post(
        "/admin/tasks/task/", {"action": "retry_as_new", "_selected_action": selected}, follow=True
    )
    assert_left_alone_said(response, user, "retry")
    retried = set(Task.objects.exclude(pk__in=selected).values_list("tenant__slug", flat=True))
    assert retried == allowed(user, "retry")


SIDEBAR = [
    ("/admin/tasks/task/", "read"),
    ("/admin/tenants/apikey/", "read"),
    ("/admin/tenants/tenant/", "money"),
    ("/admin/tenants/ledgerentry/", "money"),
    ("/admin/tasks/task/usage/", "money"),
    ("/admin/tenants/auditevent/", "audit"),
]


@users
def test_the_sidebar_links_exactly_the_pages_the_user_may_open(world, user):
    client = login(user)
    index = page(client.get("/admin/"))
    for url, perm in SIDEBAR:
        linked = f'href="{url}"' in index
        assert linked == bool(allowed(user, perm)), f"{user}: {url}"
        assert client.get(url).status_code == (200 if linked else 403), f"{user}: {url}"


@users
def test_the_audit_log_shows_a_tenants_events_to_its_managers_and_platform_events_to_staff_only(world, user):
    """Events without a tenant (channels, prices) are the platform's; a tenant's owners and admins see
    their tenant's, by the one rule the sidebar reads too."""
    platform_event = audit_record(actor=SYSTEM, action="channel.add", tenant=None, target="platform-marker")
    client = login(user)
    sees_log = bool(allowed(user, "audit"))
    assert ('href="/admin/tenants/auditevent/"' in page(client.get("/admin/"))) == sees_log
    response = client.get("/admin/tenants/auditevent/")
    assert response.status_code == (200 if sees_log else 403)
    events = {event.target for event in response.context["cl"].result_list} if sees_log else set()
    expected = {f"audit-marker-{slug}" for slug in allowed(user, "audit")}
    assert {target for target in events if target.startswith("audit-marker-")} == expected
    assert ("platform-marker" in events) == (USERS[user] is None)
    detail = client.get(f"/admin/tenants/auditevent/{platform_event.pk}/change/")
    assert detail.status_code == (200 if USERS[user] is None else 302 if sees_log else 403)


@users
def test_which_channel_served_a_task_is_shown_to_platform_staff_only(world, user, openai_channel):
    """A tenant's users see the model that served them; the upstream account behind it (the channel) is
    the platform's: not in the task list, the task page, its attempts or the failures dashboard."""
    Channel.objects.filter(pk=openai_channel.pk).update(name="upstream-account-7f3")
    for side in world.values():
        Task.objects.filter(pk=side.failed_task).update(channel=openai_channel)
        TaskAttempt.objects.create(
            task_id=side.failed_task, channel=openai_channel, number=1, error_code=side.error_code
        )
    RollupWatermark.objects.all().delete()
    UsageRollup.objects.all().delete()
    usage_rollup()
    client = login(user)
    urls = ["/admin/tasks/task/", "/admin/tasks/task/failures/"]
    urls += [
        f"/admin/tasks/task/{side.failed_task}/change/"
        for slug, side in world.items()
        if slug in allowed(user, "read")
    ]
    if not allowed(user, "read"):
        return
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert ("upstream-account-7f3" in page(response)) == (USERS[user] is None), f"{user} {url}"
