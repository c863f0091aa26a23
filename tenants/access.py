"""Who may see and do what in the admin site, decided per object by the user's role in that object's tenant.

Platform staff (active Django superusers) may do everything. Anyone else acts only through their
memberships: each row of tenant data is checked against the role the user holds in *that row's* tenant,
never against "is an admin somewhere". A user who is admin of A and viewer of B manages A's keys and only
reads B's. A user without a membership sees nothing, whatever their `is_staff` flag says.

| permission    | what it allows                                 | owner | admin | billing | member | viewer |
|---------------|------------------------------------------------|:-----:|:-----:|:-------:|:------:|:------:|
| `read`        | tasks, keys, members, rule overrides, failures |   x   |   x   |    x    |   x    |   x    |
| `money`       | tenants' balances, ledger + CSV export, usage  |   x   |   x   |    x    |        |        |
| `manage_keys` | issue, change limits of, rotate, revoke keys   |   x   |   x   |         |        |        |
| `retry`       | retry a failed task as new; cancel a task      |   x   |   x   |         |        |        |
| `audit`       | the tenant's audit events                      |   x   |   x   |         |        |        |
| `top_up`      | add credits (platform staff only)              |       |       |         |        |        |

Why so:
- Member and viewer read the same pages: "member" is the role of the people who call the API, and what
  they need from the admin is to see their keys and tasks; neither may spend or move anything.
- Billing sees money but changes nothing: finance audits the bill and exports the ledger; issuing keys or
  retrying tasks (which spends credits) is the organisation admins' job.
- Top-ups create credits, so no tenant role grants them: platform staff only. Likewise a tenant's own
  settings (status, group, limits), its members and its model rule overrides are changed by platform
  staff only; tenant roles read them.
- A task's own charge is part of the task and is read with `read`; what adds up money across tasks
  (balances, the ledger, spend per day and key) needs `money`.
- The audit log: platform staff see every event (channels, prices and other platform changes have no
  tenant); a tenant's owners and admins see their tenant's events, because they are the ones who issue,
  rotate and revoke its keys and must be able to answer "who changed this key, when, from where". The
  sidebar link (`sees_audit_log`) and `AuditEventAdmin` both read the `audit` row of this table.

`GRANTS` below is that table; everything else here (querysets, filter choices, form choices, actions,
sidebar links) reads it through `tenant_ids` / `can` / `scope`.
"""

from enum import StrEnum
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from unfold.admin import ModelAdmin

from tenants.models import Membership, Tenant

User = AbstractBaseUser | AnonymousUser


class Perm(StrEnum):
    READ = "read"
    MONEY = "money"
    MANAGE_KEYS = "manage_keys"
    RETRY = "retry"
    AUDIT = "audit"
    TOP_UP = "top_up"


_MANAGER = frozenset({Perm.READ, Perm.MONEY, Perm.MANAGE_KEYS, Perm.RETRY, Perm.AUDIT})
GRANTS: dict[str, frozenset[Perm]] = {
    Membership.Role.OWNER: _MANAGER,
    Membership.Role.ADMIN: _MANAGER,
    Membership.Role.BILLING: frozenset({Perm.READ, Perm.MONEY}),
    Membership.Role.MEMBER: frozenset({Perm.READ}),
    Membership.Role.VIEWER: frozenset({Perm.READ}),
}


def is_platform(user: User) -> bool:
    return bool(user.is_active and user.is_superuser)


def _roles(user: User) -> dict[int, str]:
    """tenant id -> the user's role there; read once per request (the user object lives one request)."""
    if not hasattr(user, "_foxgate_roles"):
        memberships = Membership.objects.filter(user_id=user.pk, user__is_active=True)
        user._foxgate_roles = dict(memberships.values_list("tenant_id", "role"))  # type: ignore[union-attr]
    return user._foxgate_roles  # type: ignore[union-attr]


def tenant_ids(user: User, perm: Perm = Perm.READ) -> list[int]:
    """The tenants in which the user's role grants `perm` (not meaningful for platform staff: see `scope`)."""
    return [tenant_id for tenant_id, role in _roles(user).items() if perm in GRANTS.get(role, ())]


def can(user: User, perm: Perm, tenant_id: int | None) -> bool:
    """May the user do `perm` to an object of this tenant? (None: a row of no tenant, the platform's.)"""
    return is_platform(user) or (tenant_id is not None and tenant_id in tenant_ids(user, perm))


def can_any(user: User, perm: Perm) -> bool:
    """May the user do `perm` in at least one tenant? (Whether to show a page, link or action at all.)"""
    return is_platform(user) or bool(tenant_ids(user, perm))


def scope(queryset: QuerySet, user: User, perm: Perm, tenant_field: str = "tenant") -> QuerySet:
    """The rows of `queryset` the user may `perm`; `tenant_field` leads from the model to its Tenant."""
    if is_platform(user):
        return queryset
    return queryset.filter(**{f"{tenant_field}__in": tenant_ids(user, perm)})


def tenants_with(user: User, perm: Perm) -> QuerySet[Tenant]:
    """The tenants the user may `perm` in, e.g. the choices of the key form's tenant field."""
    return scope(Tenant.objects.order_by("slug"), user, perm, "pk")


class TenantScopedAdmin(ModelAdmin):
    """A model admin of tenant data: each row is read with `read_perm` and changed with `write_perm` in
    its own tenant (`write_perm = None`: only platform staff change it).

    Bulk actions take a queryset of everything the user can read; `acting_on` narrows it to the rows the
    user may act on (and says how many it left out), so a selection with rows of two tenants is acted on
    only where the role allows. Detail actions find their object in `may(request, perm)`."""

    tenant_field = "tenant"
    read_perm: Perm = Perm.READ
    write_perm: Perm | None = None

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope(super().get_queryset(request), request.user, self.read_perm, self.tenant_field)

    def may(self, request: HttpRequest, perm: Perm) -> QuerySet:
        """The rows the user may `perm`."""
        return scope(self.get_queryset(request), request.user, perm, self.tenant_field)

    def acting_on(self, request: HttpRequest, queryset: QuerySet, perm: Perm) -> QuerySet:
        allowed = scope(queryset, request.user, perm, self.tenant_field)
        if refused := queryset.count() - allowed.count():
            self.message_user(
                request,
                f"{refused} of the selected rows left alone: your role in their tenant does not allow it.",
                messages.WARNING,
            )
        return allowed

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_any(request.user, self.read_perm)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may(request, self.read_perm, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform(request.user) or (
            self.write_perm is not None and can_any(request.user, self.write_perm)
        )

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_platform(request.user) or (
            self.write_perm is not None and self._may(request, self.write_perm, obj)
        )

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # nothing here is deleted: keys are revoked, money is adjusted

    def render_page(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        """One of this admin's own pages, inside the admin's frame (sidebar, breadcrumbs, messages)."""
        frame = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta}
        return TemplateResponse(request, template, frame | context)

    def _may(self, request: HttpRequest, perm: Perm, obj: Model | None) -> bool:
        if obj is None:
            return can_any(request.user, perm)
        return can(request.user, perm, self.tenant_id_of(obj))

    def _may_act(self, request: HttpRequest, perm: Perm, object_id: str | None) -> bool:
        """For a detail action's permission (unfold passes the object's id): the object's own tenant."""
        if object_id is None:
            return can_any(request.user, perm)
        obj = self.get_object(request, object_id)  # None for a malformed id or a row out of sight
        return obj is not None and can(request.user, perm, self.tenant_id_of(obj))

    def tenant_id_of(self, obj: Model) -> int | None:
        value: Any = obj
        for part in self.tenant_field.split("__"):
            value = getattr(value, part)
        return value if value is None or isinstance(value, int) else value.pk


def sees_platform_pages(request: HttpRequest) -> bool:
    """For the admin sidebar: catalog, channels and users."""
    return is_platform(request.user)


def sees_tenant_pages(request: HttpRequest) -> bool:
    """For the admin sidebar: tasks, keys, members, failures."""
    return can_any(request.user, Perm.READ)


def sees_money_pages(request: HttpRequest) -> bool:
    """For the admin sidebar: tenants, the ledger, usage and spend."""
    return can_any(request.user, Perm.MONEY)


def sees_audit_log(request: HttpRequest) -> bool:
    """For the admin sidebar: the audit log, by the same rule as AuditEventAdmin (its read_perm)."""
    return can_any(request.user, Perm.AUDIT)


class PlatformAdmin(ModelAdmin):
    """Pages only platform staff see: the catalog, the channels, the single sign-on identities."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_platform(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_platform(request.user)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
