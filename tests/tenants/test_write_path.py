"""The one write path, held by structure: no admin saves a whole row of a model that holds money, limits
or secrets, and no code outside tenants/services.py writes a money column."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.db.models.signals import pre_save

from tasks.models import Channel, Model
from tasks.services import channel_add
from tenants.models import ApiKey, Membership, ModelRuleOverride, Tenant
from tests.tenants.writes import admin_client, tenant_form

ROOT = Path(__file__).resolve().parents[2]
ADMIN_MODULES = ("tenants/admin.py", "tasks/admin.py")
PRODUCTION = ("foxgate", "tenants", "tasks")
LEDGER_SERVICES = ROOT / "tenants" / "services.py"
MONEY = {"balance", "held", "period_spend", "period_started_at"}
WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}
MONEY_SQL = re.compile(r"\b(UPDATE|INSERT)\b.*\b(balance|held|period_spend|period_started_at)\b", re.I | re.S)


def plain_saves(source: str) -> Iterator[str]:
    """`x.save(...)` and `super().save_model(...)` calls: in an admin either is a full-row save."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "save":
                yield f"line {node.lineno}: {ast.unparse(node)}"
            if node.func.attr == "save_model" and isinstance(node.func.value, ast.Call):
                yield f"line {node.lineno}: {ast.unparse(node)}"


def money_writes(source: str) -> Iterator[str]:
    """Writes of a money column: ORM writes naming one, `obj.balance = ...`, save(update_fields=[...])
    naming one, and SQL text that updates or inserts one (docstrings are prose, not SQL)."""
    tree = ast.parse(source)
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            named = {kw.arg for kw in node.keywords if kw.arg}
            listed = {
                c.value
                for kw in node.keywords
                if kw.arg in ("update_fields", "fields")
                for c in ast.walk(kw.value)
                if isinstance(c, ast.Constant)
            }
            listed |= {
                c.value
                for arg in node.args
                if node.func.attr == "bulk_update"
                for c in ast.walk(arg)
                if isinstance(c, ast.Constant)
            }
            if (node.func.attr in WRITERS and named & MONEY) or listed & MONEY:
                yield f"{where}: {ast.unparse(node)[:120]}"
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr in MONEY:
                    yield f"{where}: assigns {ast.unparse(sub)}"
        sql = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        if sql and MONEY_SQL.search(node.value):
            yield f"{where}: SQL {node.value[:80]!r}"


def production_files() -> Iterator[Path]:
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts and path != LEDGER_SERVICES:
                yield path


@pytest.mark.parametrize("module", ADMIN_MODULES)
def test_no_admin_calls_a_plain_save(module):
    found = list(plain_saves((ROOT / module).read_text()))
    assert not found, f"{module} saves whole rows; call a service instead: {found}"


def test_no_money_column_is_written_outside_the_ledger_services():
    found = {str(path.relative_to(ROOT)): list(money_writes(path.read_text())) for path in production_files()}
    found = {path: lines for path, lines in found.items() if lines}
    assert not found, f"money moves only through tenants/services.py: {found}"
    assert list(money_writes(LEDGER_SERVICES.read_text())), "the scan no longer sees the ledger's own writes"


@pytest.mark.parametrize(
    "snippet",
    [
        "Tenant.objects.filter(pk=1).update(balance=F('balance') + 1)",
        "ApiKey.objects.filter(pk=1).update(held=0)",
        "tenant.period_spend = 0",
        "tenant.balance += amount",
        "key.save(update_fields=['held', 'name'])",
        "Tenant.objects.bulk_update(rows, ['balance'])",
        "cursor.execute('UPDATE tenants_tenant SET balance = balance - %s')",
    ],
)
def test_the_money_scan_sees_each_kind_of_write(snippet):
    assert list(money_writes(snippet))


@pytest.mark.parametrize(
    "snippet", ["obj.save()", "super().save_model(request, obj, form, change)", "f.save(commit=False)"]
)
def test_the_admin_scan_sees_each_kind_of_save(snippet):
    assert list(plain_saves(snippet))


GUARDED = (Tenant, ApiKey, Channel, Model, Membership, ModelRuleOverride)


def test_every_admin_of_a_guarded_model_saves_through_a_service():
    for model in GUARDED:
        model_admin = admin.site._registry[model]
        assert type(model_admin).save_model is not ModelAdmin.save_model, f"{model.__name__} admin saves rows"
    assert type(admin.site._registry[Channel]).save_related is not ModelAdmin.save_related


@pytest.fixture
def full_row_saves():
    """Records every save of an existing Tenant, ApiKey or Channel row that writes all its columns."""
    seen: list[str] = []

    def record(sender, instance, update_fields=None, **kwargs) -> None:
        if update_fields is None and not instance._state.adding:
            seen.append(f"{sender.__name__} {instance.pk}")

    for model in (Tenant, ApiKey, Channel):
        pre_save.connect(record, sender=model, weak=False)
    yield seen
    for model in (Tenant, ApiKey, Channel):
        pre_save.disconnect(record, sender=model)


def test_the_guard_sees_a_full_row_save(tenant, full_row_saves):
    tenant.save()
    assert full_row_saves == [f"Tenant {tenant.pk}"]


@pytest.mark.django_db
def test_admin_posts_never_save_a_whole_tenant_key_or_channel_row(tenant, issued_key, full_row_saves):
    key = issued_key.api_key
    channel = channel_add(
        name="c", provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"]
    )
    client = admin_client()
    posts = [
        (f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, name="Renamed", rpm=10)),
        (f"/admin/tenants/tenant/{tenant.pk}/top-up/", {"amount": "1"}),
        (
            f"/admin/tenants/apikey/{key.pk}/change/",
            {"name": "n", "allowed_models_text": "m", "allowed_ips_text": "", "budget_period": "day"},
        ),
        ("/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]}),
        (
            f"/admin/tasks/channel/{channel.pk}/change/",
            {"name": "c", "provider": "openai", "base_url": "http://127.0.0.1:8/v1", "model_mapping": "{}"}
            | {
                "served_models": [channel.served_models.get().pk],
                "priority": 1,
                "weight": 2,
                "new_api_key": "k2",
            },
        ),
    ]
    for url, form in posts:
        assert client.post(url, form).status_code == 302, url
    assert full_row_saves == []
    tenant.refresh_from_db()
    channel.refresh_from_db()
    assert (tenant.name, tenant.rpm, channel.priority, channel.enabled) == ("Renamed", 10, 1, False)


def test_the_money_scan_reads_docstrings_as_prose_not_sql():
    assert not list(money_writes('"""Claim: one UPDATE ...; the row lock is held until it commits."""'))
    assert list(money_writes('"""A docstring."""\nSQL = "UPDATE tenants_tenant SET held = 0"'))
