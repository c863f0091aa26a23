"""Helpers for the tests of the one write path: admin clients and what an UPDATE wrote."""

import re

from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client

from tenants.models import Membership, Tenant

_SET = re.compile(r'^UPDATE "(?P<table>\w+)" SET (?P<assignments>.*?) WHERE', re.S)


def admin_client(role: str | None = None, tenant: Tenant | None = None, name: str = "") -> Client:
    """A logged-in admin client: platform staff (a superuser) for role None, else a tenant member."""
    if role is None:
        user = User.objects.create_superuser(name or "root", password="x")
    else:
        assert tenant is not None
        user = User.objects.create_user(name or f"{role}-{tenant.slug}", password="x", is_staff=True)
        Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


def updated_columns(queries: list[dict[str, str]], table: str) -> set[str]:
    """Every column an UPDATE of `table` among the captured queries wrote."""
    columns: set[str] = set()
    for query in queries:
        match = _SET.match(query["sql"])
        if match and match["table"] == table:
            columns |= set(re.findall(r'"(\w+)" = ', match["assignments"]))
    return columns


def tenant_form(tenant: Tenant, **changes: object) -> dict[str, object]:
    """The tenant change form as the admin renders it for platform staff, with `changes` typed in."""
    tenant.refresh_from_db()
    fields = ("slug", "name", "status", "group", "rpm", "tpm", "max_concurrency", "budget", "budget_period")
    form = {k: ("" if v is None else v) for k, v in model_to_dict(tenant, fields=fields).items()}
    if tenant.store_content:
        form["store_content"] = "on"  # a ticked checkbox; an unticked one is not sent
    return form | changes
