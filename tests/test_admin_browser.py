"""The admin site in a real browser (headless Chromium driven by Playwright) against the running stack.

Who sees what: platform staff see every tenant; a tenant admin sees only its tenant and may issue and
revoke its keys; a tenant viewer only reads. No page ever shows a key's secret (but the one-time page
right after issuing) or a channel's upstream key.

Set FOXGATE_SCREENSHOTS to a folder to save a full-page PNG of every page visited, named
`<role>-<page>.png`.
"""

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, Response

from tasks.models import Channel
from tasks.rollups import usage_rollup
from tasks.services import channel_add, price_set
from tenants.models import ApiKey, LedgerEntry, Membership, ModelRuleOverride, Tenant
from tenants.services import IssuedKey, apikey_issue, tenant_create
from tests.helpers import poll_until_finished

pytestmark = pytest.mark.e2e

PASSWORD = "browser-test-password-1"
UPSTREAM_KEY = "upstream-sk-never-shown-8f3a2c"
MODEL = "fake-model"


@dataclass
class TenantData:
    tenant: Tenant
    key: IssuedKey
    completed: str  # task ids
    failed: str
    ledger_line: LedgerEntry
    prompt: str


@dataclass
class World:
    acme: TenantData
    globex: TenantData
    channel: Channel
    error_code: str


PINNED_CONTENT_TYPE_IDS = 1_000_000


def _pin_content_type_ids() -> None:
    """Gives every content type the same id in every test of this file.

    Each test empties the database, and the next one recreates the content types with new ids, while
    the stack's long-lived web servers cache the ids they first saw (ContentType.objects caches per
    process): the admin's log entry of a later add would then name an id that no longer exists. With
    the ids pinned, what a server cached in one test is still right in the next. (A test-harness
    matter: in production content types never change.)"""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction

    rows = sorted(ContentType.objects.values_list("app_label", "model", "id"))
    old = [row[2] for row in rows]
    new = [PINNED_CONTENT_TYPE_IDS + n for n in range(len(rows))]
    if old == new:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute(
            "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
            "WHERE c.contype = 'f' AND c.confrelid = 'django_content_type'::regclass"
        )
        referrers = cursor.fetchall()
        renumber = "FROM unnest(%s::int[], %s::int[]) AS m(old, new) WHERE t.{column} = m.old"
        cursor.execute(
            "UPDATE django_content_type AS t SET id = m.new "  # noqa: S608 - no outside input
            + renumber.format(column="id"),
            [old, new],
        )
        for table, column in referrers:
            # the names come from pg_constraint
            update = f'UPDATE {table} AS t SET "{column}" = m.new '  # noqa: S608
            cursor.execute(update + renumber.format(column=f'"{column}"'), [old, new])
    ContentType.objects.clear_cache()


def _run_task(client: httpx.Client, prompt: str) -> dict:
    submitted = client.post("/v1/llm/generations", json={"model": MODEL, "prompt": prompt})
    assert submitted.status_code == 200, submitted.text
    return poll_until_finished(client, submitted.json()["id"])


@pytest.fixture
def world(stack, stack_db, browser) -> World:
    """Two tenants with keys, a completed and a failed task each, an override each, a priced model on a
    channel with an upstream key, the usage rollup filled, and three users: platform staff, an acme
    admin and an acme viewer."""
    _pin_content_type_ids()
    price_set(
        model_name=MODEL,
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
        capabilities=["text", "vision", "video", "audio"],
    )
    channel = channel_add(
        name="fake-upstream",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key=UPSTREAM_KEY,
        model_names=[MODEL],
    )
    httpx.post(f"{stack.fake_url}/_fake/reset")
    tenants = {
        slug: tenant_create(slug=slug, name=slug.title(), credits=Decimal(10)) for slug in ("acme", "globex")
    }
    keys = {slug: apikey_issue(tenant=tenant, name=f"{slug}-ci") for slug, tenant in tenants.items()}
    clients = {
        slug: httpx.Client(
            base_url=stack.web_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=30
        )
        for slug, key in keys.items()
    }
    try:
        completed = {slug: _run_task(clients[slug], f"hello from {slug}") for slug in tenants}
        httpx.post(f"{stack.fake_url}/_fake/config", json={"status": 400})
        try:
            failed = {slug: _run_task(clients[slug], f"doomed {slug}") for slug in tenants}
        finally:
            httpx.post(f"{stack.fake_url}/_fake/reset")
    finally:
        for client in clients.values():
            client.close()
    for slug in tenants:
        assert completed[slug]["status"] == "completed", completed[slug]
        assert failed[slug]["status"] == "failed", failed[slug]
        ModelRuleOverride.objects.create(
            tenant=tenants[slug], model_pattern=f"{slug}-only-*", max_output_tokens=123
        )
    usage_rollup(now=timezone.now() + timedelta(minutes=1))

    users = get_user_model()
    users.objects.create_superuser("platform-staff", "staff@example.com", PASSWORD)
    for role in ("admin", "viewer"):
        user = users.objects.create_user(f"acme-{role}", f"{role}@acme.example", PASSWORD, is_staff=True)
        Membership.objects.create(user=user, tenant=tenants["acme"], role=role)

    def data(slug: str) -> TenantData:
        return TenantData(
            tenant=tenants[slug],
            key=keys[slug],
            completed=completed[slug]["id"],
            failed=failed[slug]["id"],
            ledger_line=LedgerEntry.objects.filter(tenant=tenants[slug]).order_by("created_at").first(),
            prompt=f"hello from {slug}",
        )

    return World(
        acme=data("acme"),
        globex=data("globex"),
        channel=channel,
        error_code=failed["acme"]["error"]["code"],
    )


@dataclass
class AdminSession:
    """A logged-in browser tab of one user; every page it visits may be saved as a screenshot."""

    page: Page
    role: str
    base_url: str
    shot_dir: Path | None = field(default=None)

    def visit(self, name: str, path: str, *, status: int | tuple[int, ...] = 200) -> Response:
        response = self.page.goto(self.base_url + path)
        assert response is not None, f"{self.role}: no response for {path}"
        self.shot(name)
        expected = (status,) if isinstance(status, int) else status
        assert response.status in expected, (
            f"{self.role} GET {path}: HTTP {response.status} (expected {status}) at {self.page.url}; "
            f"page text: {self.text()[:800]!r}"
        )
        return response

    def shot(self, name: str) -> None:
        if self.shot_dir is not None:
            self.page.screenshot(path=str(self.shot_dir / f"{self.role}-{name}.png"), full_page=True)

    def html(self) -> str:
        return self.page.content()

    def text(self) -> str:
        return self.page.inner_text("body")

    def nav_links(self) -> set[str]:
        """The hrefs of the sidebar's navigation."""
        return set(
            self.page.locator("nav a[href^='/admin/']").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"
            )
        )

    def login(self, username: str) -> None:
        self.visit("login", "/admin/login/?next=/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        with self.page.expect_navigation():
            self.page.locator("form#login-form [type=submit], form [type=submit]").first.click()
        assert self.page.url == f"{self.base_url}/admin/", (
            f"{username} could not log in: {self.text()[:500]!r}"
        )


@pytest.fixture
def open_session(browser, stack, world) -> Iterator:
    """Opens logged-in sessions, each in its own browser context, and closes them after the test."""
    shots = os.environ.get("FOXGATE_SCREENSHOTS")
    shot_dir = Path(shots) if shots else None
    if shot_dir is not None:
        shot_dir.mkdir(parents=True, exist_ok=True)
    contexts = []

    def open_as(username: str, role: str, *, screenshots: bool = True) -> AdminSession:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        session = AdminSession(
            page=context.new_page(),
            role=role,
            base_url=stack.web_url,
            shot_dir=shot_dir if screenshots else None,
        )
        session.login(username)
        return session

    yield open_as
    for context in contexts:
        context.close()


PLATFORM_PAGES = {
    "channels": "/admin/tasks/channel/",
    "models": "/admin/tasks/model/",
    "prices": "/admin/tasks/price/",
    "users": "/admin/auth/user/",
}


def test_platform_staff_see_every_page_with_both_tenants(open_session, world: World):
    staff = open_session("platform-staff", "staff")
    acme, globex = world.acme, world.globex

    staff.visit("dashboard", "/admin/")
    for path in [*PLATFORM_PAGES.values(), "/admin/tenants/auditevent/", "/admin/tasks/task/usage/"]:
        assert path in staff.nav_links(), f"staff sidebar lacks {path}"

    staff.visit("usage", "/admin/tasks/task/usage/")
    tenants_chart = staff.page.inner_text("#chart-tenants")
    assert "acme" in tenants_chart and "globex" in tenants_chart
    keys_chart = staff.page.inner_text("#chart-keys")
    assert acme.key.api_key.key_id in keys_chart and globex.key.api_key.key_id in keys_chart

    staff.visit("failures", "/admin/tasks/task/failures/")
    groups = staff.page.inner_text("#failure-groups")
    assert world.error_code in groups and "fake-upstream" in groups
    first_group = staff.page.locator("#failure-groups tr").nth(1).inner_text()
    assert first_group.split()[-1] == "2"  # one failure of each tenant

    staff.visit("tasks", "/admin/tasks/task/")
    tasks_html = staff.html()
    for task_id in (acme.completed, acme.failed, globex.completed, globex.failed):
        assert task_id in tasks_html

    staff.visit("task-detail", f"/admin/tasks/task/{globex.completed}/change/")
    assert globex.completed in staff.text() and f"Echo: {globex.prompt}" in staff.text()

    staff.visit("tenants", "/admin/tenants/tenant/")
    assert "acme" in staff.text() and "globex" in staff.text()
    staff.visit("tenant-detail", f"/admin/tenants/tenant/{globex.tenant.pk}/change/")
    assert "globex" in staff.html() and "Top up" in staff.text()

    staff.visit("keys", "/admin/tenants/apikey/")
    assert acme.key.api_key.key_id in staff.text() and globex.key.api_key.key_id in staff.text()

    staff.visit("members", "/admin/tenants/membership/")
    assert "acme-admin" in staff.text() and "acme-viewer" in staff.text()

    staff.visit("overrides", "/admin/tenants/modelruleoverride/")
    assert "acme-only-*" in staff.text() and "globex-only-*" in staff.text()

    staff.visit("ledger", "/admin/tenants/ledgerentry/")
    ledger = staff.page.inner_text("#result_list")
    assert "acme" in ledger and "globex" in ledger and globex.completed in ledger

    staff.visit("channels", "/admin/tasks/channel/")
    assert "fake-upstream" in staff.text()
    staff.visit("channel-detail", f"/admin/tasks/channel/{world.channel.pk}/change/")
    assert staff.page.input_value("#id_name") == "fake-upstream"

    staff.visit("models", "/admin/tasks/model/")
    assert MODEL in staff.text()
    staff.visit("prices", "/admin/tasks/price/")
    assert MODEL in staff.text()

    staff.visit("audit-log", "/admin/tenants/auditevent/")
    audit = staff.text()
    assert "tenant.create" in audit and "key.issue" in audit and "channel.add" in audit

    staff.visit("users", "/admin/auth/user/")
    for username in ("platform-staff", "acme-admin", "acme-viewer"):
        assert username in staff.text()


def _assert_not_reachable(session: AdminSession, name: str, path: str, *hidden: str) -> None:
    """Django admin answers an object outside the user's queryset by redirecting to the index with a
    "doesn't exist" message (or a 403/404); the object's data must not be on the page either way."""
    response = session.visit(name, path, status=(200, 403, 404))
    if response.status == 200:
        redirected = response.request.redirected_from
        assert redirected is not None and session.page.url.rstrip("/").endswith("/admin"), (
            f"{session.role} GET {path} was answered with the object's page: {session.text()[:800]!r}"
        )
        assert "doesn\u2019t exist" in session.text()  # Django's curly apostrophe
    html = session.html()
    for value in hidden:
        assert value not in html, f"{session.role} GET {path} shows {value!r}"


def test_tenant_admin_sees_only_its_tenant(open_session, world: World):
    admin = open_session("acme-admin", "acme-admin")
    acme, globex = world.acme, world.globex

    admin.visit("dashboard", "/admin/")
    nav = admin.nav_links()
    # a tenant admin sees its own tenant's audit log (tenants.access: the `audit` permission)
    assert "/admin/tenants/apikey/" in nav and "/admin/tasks/task/" in nav
    assert "/admin/tenants/auditevent/" in nav
    for path in PLATFORM_PAGES.values():
        assert path not in nav, f"the acme admin's sidebar links {path}"
    assert "globex" not in admin.html()

    admin.visit("usage", "/admin/tasks/task/usage/")
    assert acme.key.api_key.key_id in admin.text()
    assert globex.key.api_key.key_id not in admin.html() and "globex" not in admin.html()

    admin.visit("failures", "/admin/tasks/task/failures/")
    first_group = admin.page.locator("#failure-groups tr").nth(1).inner_text()
    assert world.error_code in first_group and first_group.split()[-1] == "1"  # acme's failure only

    admin.visit("tasks", "/admin/tasks/task/")
    html = admin.html()
    assert acme.completed in html and acme.failed in html
    assert globex.completed not in html and globex.failed not in html and "globex" not in html

    admin.visit("task-detail", f"/admin/tasks/task/{acme.completed}/change/")
    assert f"Echo: {acme.prompt}" in admin.text()

    admin.visit("tenants", "/admin/tenants/tenant/")
    assert "acme" in admin.text() and "globex" not in admin.html()

    admin.visit("keys", "/admin/tenants/apikey/")
    assert acme.key.api_key.key_id in admin.text()
    assert admin.page.locator("a[href$='/admin/tenants/apikey/add/']").count() >= 1
    assert admin.page.locator("select[name=action] option[value=revoke_keys]").count() == 1
    assert globex.key.api_key.key_id not in admin.html() and "globex" not in admin.html()

    admin.visit("members", "/admin/tenants/membership/")
    assert "acme-viewer" in admin.text() and "platform-staff" not in admin.text()

    admin.visit("overrides", "/admin/tenants/modelruleoverride/")
    assert "acme-only-*" in admin.text() and "globex-only-*" not in admin.html()

    admin.visit("ledger", "/admin/tenants/ledgerentry/")
    assert acme.completed in admin.text()
    assert "globex" not in admin.html() and globex.completed not in admin.html()

    for page_name, path in PLATFORM_PAGES.items():
        admin.visit(f"{page_name}-refused", path, status=(403, 404))
        assert "fake-upstream" not in admin.html() and "platform-staff" not in admin.html()
    admin.visit(
        "channel-detail-refused", f"/admin/tasks/channel/{world.channel.pk}/change/", status=(403, 404)
    )
    assert "fake-upstream" not in admin.html()

    admin.visit("audit-log", "/admin/tenants/auditevent/")
    audit = admin.html()
    assert "key.issue" in audit  # acme's own events
    assert "globex" not in audit and "channel.add" not in audit and "price.set" not in audit

    _assert_not_reachable(
        admin,
        "globex-key",
        f"/admin/tenants/apikey/{globex.key.api_key.pk}/change/",
        globex.key.api_key.key_id,
        "globex-ci",
    )
    _assert_not_reachable(
        admin,
        "globex-task",
        f"/admin/tasks/task/{globex.completed}/change/",
        f"Echo: {globex.prompt}",
        globex.prompt,
        "globex",
    )
    _assert_not_reachable(
        admin,
        "globex-ledger-line",
        f"/admin/tenants/ledgerentry/{globex.ledger_line.pk}/change/",
        "globex",
        globex.ledger_line.memo,
    )
    _assert_not_reachable(
        admin, "globex-tenant", f"/admin/tenants/tenant/{globex.tenant.pk}/change/", "globex", "Globex"
    )


def _issue_key_in_browser(admin: AdminSession, tenant: Tenant, name: str) -> tuple[ApiKey, str]:
    """Fills the key add form; returns the new key and the secret its one-time page shows."""
    admin.visit("key-add", "/admin/tenants/apikey/add/")
    admin.page.select_option("#id_tenant", str(tenant.pk))
    admin.page.fill("#id_name", name)
    with admin.page.expect_navigation():
        admin.page.locator("button[name=_save], input[name=_save]").first.click()
    admin.shot("key-secret")
    # the secret is the answer to the form's POST itself: no redirect to a page that could show it again
    assert admin.page.locator("#new-key-secret").count() == 1, (
        f"saving the key form went to {admin.page.url}: {admin.text()[:800]!r}"
    )
    secret = admin.page.inner_text("#new-key-secret").strip()
    api_key = ApiKey.objects.get(tenant=tenant, name=name)
    assert admin.page.url.endswith("/admin/tenants/apikey/add/")
    assert secret.startswith(f"sk-{api_key.key_id}")
    return api_key, secret


def _models_status(stack, secret: str) -> int:
    return httpx.get(f"{stack.web_url}/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code


def test_tenant_admin_issues_a_key_and_revokes_it(open_session, stack, world: World):
    admin = open_session("acme-admin", "acme-admin")
    api_key, secret = _issue_key_in_browser(admin, world.acme.tenant, "issued-in-browser")

    assert _models_status(stack, secret) == 200

    admin.visit("key-after-issue", f"/admin/tenants/apikey/{api_key.pk}/change/")
    assert admin.page.locator("#new-key-secret").count() == 0 and secret not in admin.html()

    admin.visit("keys-before-revoke", "/admin/tenants/apikey/")
    row = admin.page.locator("#result_list tbody tr", has_text="issued-in-browser")
    assert row.count() == 1
    row.locator("input.action-select").check()
    admin.page.select_option("select[name=action]", "revoke_keys")
    with admin.page.expect_navigation():
        admin.page.locator("#changelist-actions button[name=index]").click()
    admin.shot("keys-after-revoke")
    assert "Revoked" in admin.text()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None

    deadline = time.monotonic() + 2
    status = _models_status(stack, secret)
    while status != 401 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _models_status(stack, secret)
    assert status == 401, f"the revoked key still answered {status} after 2 s"
    assert _models_status(stack, world.acme.key.secret) == 200  # the other key is untouched


def test_tenant_viewer_reads_but_cannot_manage_keys(open_session, world: World):
    viewer = open_session("acme-viewer", "acme-viewer")
    acme, globex = world.acme, world.globex

    viewer.visit("dashboard", "/admin/")
    viewer.visit("tasks", "/admin/tasks/task/")
    assert acme.completed in viewer.html() and globex.completed not in viewer.html()

    viewer.visit("keys", "/admin/tenants/apikey/")
    assert acme.key.api_key.key_id in viewer.text() and globex.key.api_key.key_id not in viewer.html()
    assert viewer.page.locator("a[href$='/admin/tenants/apikey/add/']").count() == 0
    assert viewer.page.locator("select[name=action] option[value=revoke_keys]").count() == 0

    viewer.visit("key-add-refused", "/admin/tenants/apikey/add/", status=403)
    assert viewer.page.locator("#id_name").count() == 0

    # A key's own page is readable, without a save button or the rotate action.
    viewer.visit("key-detail", f"/admin/tenants/apikey/{acme.key.api_key.pk}/change/")
    assert viewer.page.locator("button[name=_save], input[name=_save]").count() == 0
    assert "Rotate" not in viewer.text()


def test_no_page_shows_a_secret(open_session, world: World):
    admin = open_session("acme-admin", "acme-admin", screenshots=False)  # tests 1-4 take the pictures
    api_key, secret = _issue_key_in_browser(admin, world.acme.tenant, "never-shown-again")
    hidden_part = secret.removeprefix(f"sk-{api_key.key_id}")
    assert len(hidden_part) >= 20

    for name, path in [
        ("keys", "/admin/tenants/apikey/"),
        ("key-detail", f"/admin/tenants/apikey/{api_key.pk}/change/"),
        ("key-rotate-confirm", f"/admin/tenants/apikey/{api_key.pk}/rotate/"),
        ("task-detail", f"/admin/tasks/task/{world.acme.completed}/change/"),
    ]:
        admin.visit(name, path)
        html = admin.html()
        assert secret not in html and hidden_part not in html, f"{path} shows the key's secret"
        assert world.acme.key.secret not in html

    staff = open_session("platform-staff", "staff", screenshots=False)
    for name, path in [
        ("channel-detail", f"/admin/tasks/channel/{world.channel.pk}/change/"),
        ("channels", "/admin/tasks/channel/"),
        ("audit-log", "/admin/tenants/auditevent/"),
    ]:
        staff.visit(name, path)
        html = staff.html()
        assert UPSTREAM_KEY not in html, f"{path} shows the channel's upstream key"
        assert secret not in html and hidden_part not in html
    assert Channel.objects.get(pk=world.channel.pk).api_key == UPSTREAM_KEY  # it is stored, just never shown
