"""Single sign-on to the admin site with OpenID Connect, through mozilla-django-oidc.

On when FOXGATE_OIDC_ISSUER is set. The provider's endpoints come from its discovery document
(`{issuer}/.well-known/openid-configuration`), read once per process when a sign-in first needs them, so a
provider that is down does not stop FoxGate from starting. The flow is the authorization code flow with
PKCE and a nonce; the ID token's signature is checked against the provider's JWKS.

Who a user is comes from the claims, at every sign-in: the groups claim (FOXGATE_OIDC_GROUPS_CLAIM,
`groups` by default) is mapped by FOXGATE_OIDC_GROUP_ROLES, a JSON object from a group to `staff`
(platform staff) or `TENANT:ROLE` (a membership: owner, admin, billing, member or viewer of the tenant
with that slug). The user is created on first sign-in, bound to the provider's subject (never to an
email, which can change hands), and their staff flag and memberships are made to match the claims each
time: a group removed at the provider is a role removed here at the next sign-in. A user whose groups map
to nothing is refused with a page saying so, and loses the roles sign-in gave them; a user the platform
deactivated stays deactivated, and sign-in refuses them. Every sign-in, refusal and role change is an
AuditEvent.
"""

import functools
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.crypto import get_random_string
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from tenants.models import Membership, SsoIdentity, Tenant
from tenants.services import Actor, audit_record, membership_add, membership_remove, membership_update

logger = logging.getLogger(__name__)

STAFF = "staff"
ROLE_RANK = {role: rank for rank, role in enumerate(reversed(Membership.Role.values))}  # owner highest
GRANT = re.compile(rf"^(?:{STAFF}|(?P<tenant>[-a-zA-Z0-9_]+):(?P<role>{'|'.join(Membership.Role.values)}))$")
DISCOVERY_TIMEOUT = 10.0


@functools.cache
def provider_metadata() -> dict[str, Any]:
    """The provider's discovery document, fetched once per process (a failure is retried next time)."""
    url = f"{settings.OIDC_ISSUER}/.well-known/openid-configuration"
    metadata = httpx.get(url, timeout=DISCOVERY_TIMEOUT).raise_for_status().json()
    if metadata.get("issuer", "").rstrip("/") != settings.OIDC_ISSUER:
        raise ImproperlyConfigured(f"{url} names issuer {metadata.get('issuer')!r}, not FOXGATE_OIDC_ISSUER")
    return metadata


def _discovered(name: str) -> property:
    return property(lambda self: provider_metadata()[name])


@functools.cache
def group_roles() -> dict[str, str]:
    """FOXGATE_OIDC_GROUP_ROLES, checked: a group to `staff` or `TENANT:ROLE`."""
    try:
        mapping = json.loads(settings.OIDC_GROUP_ROLES or "{}")
    except ValueError as error:
        raise ImproperlyConfigured(f"FOXGATE_OIDC_GROUP_ROLES is not JSON: {error}") from None
    if not isinstance(mapping, dict):
        raise ImproperlyConfigured("FOXGATE_OIDC_GROUP_ROLES must be a JSON object: group -> role")
    for group, grant in mapping.items():
        if not isinstance(grant, str) or not GRANT.match(grant):
            roles = ", ".join(Membership.Role.values)
            raise ImproperlyConfigured(
                f"FOXGATE_OIDC_GROUP_ROLES[{group!r}] must be {STAFF!r} or 'TENANT:ROLE', ROLE one of {roles}"
            )
    return mapping


@dataclass(frozen=True)
class Grants:
    """What a user's claims make them: platform staff, and a role per tenant slug."""

    staff: bool = False
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def anything(self) -> bool:
        return self.staff or bool(self.roles)


def grants_from(claims: dict[str, Any]) -> Grants:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    staff, roles = False, {}
    for group in groups:
        grant = group_roles().get(group)
        if grant is None:
            continue
        match = GRANT.match(grant)
        if grant == STAFF:
            staff = True
        elif ROLE_RANK[match["role"]] > ROLE_RANK.get(roles.get(match["tenant"]), -1):
            roles[match["tenant"]] = match["role"]  # a user in two groups of a tenant has the higher role
    return Grants(staff=staff, roles=roles)


def roles_sync(user: Any, grants: Grants, actor: Actor) -> None:
    """Make the user's staff flags and memberships what the grants say, auditing each change."""
    with transaction.atomic():
        # is_active is left alone: a user the platform deactivated stays so, whatever their groups say
        if (user.is_superuser, user.is_staff) != (grants.staff, grants.anything):
            before = {"platform_staff": user.is_superuser, "admin_site": user.is_staff}
            user.is_superuser, user.is_staff = grants.staff, grants.anything
            user.save(update_fields=["is_superuser", "is_staff"])
            after = {"platform_staff": user.is_superuser, "admin_site": user.is_staff}
            audit_record(
                actor=actor,
                action="sso.role_change",
                tenant=None,
                target=f"user {user.get_username()}",
                details={"before": before, "after": after},
            )
        current = {m.tenant.slug: m for m in Membership.objects.filter(user=user).select_related("tenant")}
        for slug, membership in current.items():
            if slug not in grants.roles:
                membership_remove(membership=membership, actor=actor)
            elif membership.role != grants.roles[slug]:
                membership_update(membership=membership, actor=actor, role=grants.roles[slug])
        tenants = Tenant.objects.in_bulk([s for s in grants.roles if s not in current], field_name="slug")
        for slug, tenant in tenants.items():
            membership_add(user=user, tenant=tenant, role=grants.roles[slug], actor=actor)
        for slug in set(grants.roles) - set(current) - set(tenants):
            logger.warning("sign-in of %s: no tenant %r, as a group maps to", user.get_username(), slug)


class SsoBackend(OIDCAuthenticationBackend):
    """The provider's users as Django users, bound to their subject, their roles from their claims."""

    OIDC_OP_TOKEN_ENDPOINT = _discovered("token_endpoint")
    OIDC_OP_USER_ENDPOINT = _discovered("userinfo_endpoint")
    OIDC_OP_JWKS_ENDPOINT = _discovered("jwks_uri")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Not the parent's: it reads the endpoints, which Django's every session check would then fetch.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    def actor(self, claims: dict[str, Any]) -> Actor:
        name = claims.get("preferred_username") or claims.get("email") or claims.get("sub", "")
        return Actor(f"sso:{name}", source=self.request.META.get("REMOTE_ADDR", "") if self.request else "")

    def filter_users_by_claims(self, claims: dict[str, Any]):
        return self.UserModel.objects.filter(
            sso_identity__issuer=settings.OIDC_ISSUER, sso_identity__subject=claims.get("sub", "")
        )

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        """Refuse a user whose groups map to no role, taking back what an earlier sign-in gave."""
        if not claims.get("sub"):
            return False
        grants = grants_from(claims)
        if grants.anything:
            return True
        actor = self.actor(claims)
        user = self.filter_users_by_claims(claims).first()
        if user is not None:
            roles_sync(user, grants, actor)  # no role left: not even the admin site
        groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
        audit_record(
            actor=actor, action="sso.refused", tenant=None, target=actor.name, details={"groups": groups}
        )
        if self.request is not None:
            self.request.session["sso_refused"] = {"who": actor.name.removeprefix("sso:"), "groups": groups}
        return False

    def create_user(self, claims: dict[str, Any]):
        user = self.UserModel.objects.create_user(
            username=_free_username(claims),
            email=claims.get("email", ""),
            first_name=claims.get("given_name", "")[:150],
            last_name=claims.get("family_name", "")[:150],
        )  # no password: this user signs in through the provider only
        SsoIdentity.objects.create(user=user, issuer=settings.OIDC_ISSUER, subject=claims["sub"])
        audit_record(
            actor=self.actor(claims),
            action="sso.user_create",
            tenant=None,
            target=f"user {user.get_username()}",
            details={"subject": claims["sub"], "issuer": settings.OIDC_ISSUER},
        )
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]):
        actor = self.actor(claims)
        roles_sync(user, grants_from(claims), actor)
        groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
        SsoIdentity.objects.filter(user=user).update(groups=groups, last_sign_in=timezone.now())
        audit_record(
            actor=actor,
            action="sso.sign_in",
            tenant=None,
            target=f"user {user.get_username()}",
            details={"groups": groups},
        )
        return user


def _free_username(claims: dict[str, Any]) -> str:
    """The provider's user name (or the email's local part), made unique: never an existing user's, so
    signing in can never take over a local account."""
    User = get_user_model()
    wanted = (claims.get("preferred_username") or claims.get("email", "").split("@")[0] or "sso-user")[:140]
    username = wanted
    while User.objects.filter(username=username).exists():
        username = f"{wanted}-{get_random_string(6).lower()}"
    return username


class SsoAuthenticationRequestView(OIDCAuthenticationRequestView):
    """The redirect to the provider's authorization endpoint, as its discovery document names it."""

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        if attr == "OIDC_OP_AUTHORIZATION_ENDPOINT":
            return provider_metadata()["authorization_endpoint"]
        return import_from_settings(attr, *args)


def sign_in_options(request: HttpRequest) -> dict[str, bool]:
    """A context processor for the admin's sign-in page (templates/admin/login.html): the ways to sign in
    it offers."""
    return {"sso_sign_in": bool(settings.OIDC_ISSUER), "password_sign_in": settings.PASSWORD_LOGIN}


def sso_refused(request: HttpRequest) -> HttpResponse:
    """Where a refused or failed sign-in lands: who was refused and why, in words."""
    return TemplateResponse(
        request,
        "admin/sso_refused.html",
        {"refused": request.session.pop("sso_refused", None), "site_title": "FoxGate"},
        status=403,
    )
