"""Who may see and do what in the admin site.

Platform staff (Django superusers) see and manage everything. Anyone else logs in as a member of one or
more tenants (Membership) and sees only those tenants' rows: owners and admins manage their keys, members,
billing staff and viewers only read. Every admin page of tenant data goes through `TenantScopedAdmin`, so
another tenant's row is simply not there — a 404 by URL, absent from lists and filters.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from unfold.admin import ModelAdmin

from tenants.models import Membership, Tenant

MANAGER_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN)


def is_platform(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_active and user.is_superuser)


def tenant_ids(user: AbstractBaseUser | AnonymousUser, roles: tuple[str, ...] | None = None) -> list[int]:
    """The tenants the user belongs to (with one of `roles`, if given). Cached on the user per request."""
    cache_name = f"_tenant_ids_{roles}"
    if not hasattr(user, cache_name):
        memberships = Membership.objects.filter(user_id=user.pk)
        if roles is not None:
            memberships = memberships.filter(role__in=roles)
        setattr(user, cache_name, list(memberships.values_list("tenant_id", flat=True)))
    return getattr(user, cache_name)


def managed_tenants(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Tenant]:
    """The tenants whose keys the user may issue, rotate and revoke."""
    if is_platform(user):
        return Tenant.objects.all()
    return Tenant.objects.filter(pk__in=tenant_ids(user, MANAGER_ROLES))


class TenantScopedAdmin(ModelAdmin):
    """A model admin of tenant data: rows are filtered to the user's tenants, writes need a manager role.

    `tenant_field` is the lookup from the model to its Tenant; `members_write` lets owners and admins
    change rows (for keys); `platform_only` hides the page from tenant users altogether."""

    tenant_field = "tenant"
    members_write = False
    platform_only = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if is_platform(request.user):
            return queryset
        if self.platform_only:
            return queryset.none()
        return queryset.filter(**{f"{self.tenant_field}__in": tenant_ids(request.user)})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform(request.user) or (not self.platform_only and bool(tenant_ids(request.user)))

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request) and (obj is None or self._mine(request, obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform(request.user) or (
            self.members_write and bool(tenant_ids(request.user, MANAGER_ROLES))
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if is_platform(request.user):
            return True
        if not self.members_write:
            return False
        managed = tenant_ids(request.user, MANAGER_ROLES)
        return bool(managed) and (obj is None or self._tenant_id(obj) in managed)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # nothing here is deleted: keys are revoked, money is adjusted

    def render_page(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        """One of this admin's own pages, inside the admin's frame (sidebar, breadcrumbs, messages)."""
        frame = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta}
        return TemplateResponse(request, template, frame | context)

    def _mine(self, request: HttpRequest, obj) -> bool:
        return is_platform(request.user) or self._tenant_id(obj) in tenant_ids(request.user)

    def _tenant_id(self, obj) -> int:
        value = obj
        for part in self.tenant_field.split("__"):
            value = getattr(value, part)
        return value.pk


def sees_platform_pages(request: HttpRequest) -> bool:
    """For the admin sidebar: catalog, channels and the audit log."""
    return is_platform(request.user)


def sees_tenant_pages(request: HttpRequest) -> bool:
    """For the admin sidebar: tasks, keys, usage and the ledger."""
    return is_platform(request.user) or bool(tenant_ids(request.user))
