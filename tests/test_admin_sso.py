"""Single sign-on to the admin site, in a real browser, through a real OpenID Connect provider.

The provider is django-oauth-toolkit with OIDC on, in its own process with its own users and groups
(tests/oidc_provider); FoxGate runs its own web server process configured for it, password sign-in off.
Chromium signs in at the provider and lands back in the admin as whatever the groups claim maps to."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page

from foxgate.stack import Stack, wait_until_up
from tenants.models import AuditEvent, Membership, SsoIdentity
from tenants.services import Actor, tenant_create
from tenants.sso import Grants, grants_from, roles_sync
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

CLIENT_ID, CLIENT_SECRET = "foxgate-admin", "client-secret-for-the-sso-test"
PASSWORD = "idp-password-1"
ACCOUNTS = {
    "olga": ["foxgate-staff"],  # platform staff
    "tara": ["acme-admins", "everyone"],  # admin of tenant acme
    "nora": ["everyone"],  # maps to nothing
}
GROUP_ROLES = {"foxgate-staff": "staff", "acme-admins": "acme:admin", "acme-billing": "acme:billing"}


@dataclass
class SsoSite:
    url: str  # FoxGate's web server, configured for the provider
    issuer: str


@pytest.fixture(scope="module")
def sso_site(stack, tmp_path_factory) -> Iterator[SsoSite]:
    """The provider's process and a FoxGate web server (with its worker cluster and fake provider) whose
    admin signs in through it, on the test database."""
    web_port, idp_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}/o"
    folder = tmp_path_factory.mktemp("sso")
    users = [
        {"username": name, "password": PASSWORD, "email": f"{name}@example.com", "groups": groups}
        for name, groups in ACCOUNTS.items()
    ]
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": f"http://127.0.0.1:{web_port}/oidc/callback/",
    }
    with open(folder / "idp.log", "wb") as log:
        provider = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider.serve", str(idp_port), str(folder / "idp.sqlite3")],
            env={
                **os.environ,
                "OIDC_PROVIDER_USERS": json.dumps(users),
                "OIDC_PROVIDER_CLIENT": json.dumps(client),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    site = Stack(
        web_port=web_port,
        fake_port=free_port(),
        env={
            **stack.env,
            "FOXGATE_OIDC_ISSUER": issuer,
            "FOXGATE_OIDC_CLIENT_ID": CLIENT_ID,
            "FOXGATE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "FOXGATE_OIDC_GROUP_ROLES": json.dumps(GROUP_ROLES),
            "FOXGATE_PASSWORD_LOGIN": "0",
        },
        log_dir=folder,
    )
    try:
        wait_until_up(f"{issuer}/.well-known/openid-configuration", 30, lambda: exited(provider))
        site.start()
        yield SsoSite(url=site.web_url, issuer=issuer)
    finally:
        site.stop()
        provider.terminate()
        provider.wait()


def exited(provider: subprocess.Popen) -> list[str]:
    return ["identity provider"] if provider.poll() is not None else []


def sign_in(page: Page, site: SsoSite, username: str) -> None:
    """Through FoxGate's sign-in page to the provider's, and back."""
    page.goto(f"{site.url}/admin/login/?next=/admin/")
    assert page.locator("#login-form").count() == 0  # password sign-in is off
    page.click("#sso-sign-in")
    page.wait_for_url(f"{site.issuer.removesuffix('/o')}/accounts/login/**")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#idp-submit")
    page.wait_for_url(f"{site.url}/**")


@pytest.fixture
def tenants(stack_db):
    return tenant_create(slug="acme"), tenant_create(slug="globex")


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_platform_staff_sign_in_through_the_provider_and_see_every_tenant(sso_site, tenants, page):
    sign_in(page, sso_site, "olga")
    page.goto(f"{sso_site.url}/admin/tenants/tenant/")
    listed = page.inner_text("#result_list")
    assert "acme" in listed and "globex" in listed
    olga = get_user_model().objects.get(email="olga@example.com")
    assert olga.is_superuser and olga.is_staff and not olga.has_usable_password()
    assert SsoIdentity.objects.get(user=olga).groups == ["foxgate-staff"]
    actions = set(AuditEvent.objects.filter(actor="sso:olga").values_list("action", flat=True))
    assert {"sso.user_create", "sso.role_change", "sso.sign_in"} <= actions
    page.goto(f"{sso_site.url}/admin/tenants/ssoidentity/")  # who signed in, and as what
    assert "olga" in page.inner_text("#result_list") and "platform staff" in page.inner_text("#result_list")


def test_a_tenant_admin_signs_in_and_sees_only_their_tenant(sso_site, tenants, page):
    sign_in(page, sso_site, "tara")
    page.goto(f"{sso_site.url}/admin/tenants/tenant/")
    listed = page.inner_text("#result_list")
    assert "acme" in listed and "globex" not in listed
    globex = tenants[1]
    # Django's admin answers an object outside the user's queryset by going back to the index
    page.goto(f"{sso_site.url}/admin/tenants/tenant/{globex.pk}/change/")
    assert page.url.rstrip("/").endswith("/admin") and "doesn\u2019t exist" in page.inner_text("body")
    tara = Membership.objects.get(tenant__slug="acme")
    assert (tara.user.username, tara.role, tara.user.is_superuser) == ("tara", "admin", False)
    assert AuditEvent.objects.filter(actor="sso:tara", action="member.add", tenant=tenants[0]).exists()


def test_a_user_whose_groups_map_to_nothing_is_refused_with_a_page_saying_so(sso_site, tenants, page):
    sign_in(page, sso_site, "nora")
    assert page.url.startswith(f"{sso_site.url}/sso/refused/")
    refusal = page.inner_text("#sso-refused")
    assert "nora" in refusal and "everyone" in refusal
    assert not get_user_model().objects.filter(username="nora").exists()
    assert AuditEvent.objects.filter(action="sso.refused", details__groups=["everyone"]).exists()
    assert page.goto(f"{sso_site.url}/admin/").url.startswith(f"{sso_site.url}/admin/login/")


def test_each_sign_in_makes_the_roles_what_the_claims_say(stack_db, settings):
    """A group added, changed or removed at the provider is a role added, changed or removed at the
    next sign-in, each an audit event; the higher role wins when two groups name one tenant."""
    settings.OIDC_GROUP_ROLES = json.dumps(GROUP_ROLES)
    acme = tenant_create(slug="acme")
    user = get_user_model().objects.create_user("tara")
    actor = Actor("sso:tara")
    both = grants_from({"groups": ["acme-billing", "acme-admins"]})
    assert both == Grants(staff=False, roles={"acme": "admin"})
    roles_sync(user, both, actor)
    assert Membership.objects.get(user=user, tenant=acme).role == "admin" and user.is_staff
    roles_sync(user, grants_from({"groups": ["acme-billing"]}), actor)
    assert Membership.objects.get(user=user, tenant=acme).role == "billing"
    roles_sync(user, grants_from({"groups": []}), actor)
    assert not Membership.objects.filter(user=user).exists() and not user.is_staff
    user.is_active = False  # deactivated by the platform: groups do not bring the user back
    user.save()
    roles_sync(user, both, actor)
    user.refresh_from_db()
    assert user.is_staff and not user.is_active
    actions = list(
        AuditEvent.objects.filter(actor="sso:tara").order_by("id").values_list("action", flat=True)
    )
    added, changed, removed = (
        ["sso.role_change", "member.add"],
        ["member.update"],
        ["sso.role_change", "member.remove"],
    )
    assert actions == added + changed + removed + added
