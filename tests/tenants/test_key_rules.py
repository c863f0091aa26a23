"""A key's rules hold on every path: the services, the command line and the admin share them."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError
from django.db import connection
from psycopg.conninfo import make_conninfo

from tenants.models import ApiKey, AuditEvent, Tenant
from tenants.services import apikey_issue, apikey_update, limits_set, tenant_create, tenant_update
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def capped(tenant) -> Tenant:
    """acme, capped at 100 requests and 1,000 tokens a minute, 2 tasks at once and 50 credits a month."""
    limits_set(target=tenant, rpm=100, tpm=1000, max_concurrency=2, budget=Decimal(50))
    return tenant


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--rpm", "100000"), ("--tpm", "1001"), ("--concurrency", "3"), ("--budget", "50.000001")],
)
def test_issuekey_above_the_tenants_limit_is_refused_naming_the_flag(capped, flag, value):
    with pytest.raises(CommandError) as refused:
        run("issuekey", "acme", flag, value)
    assert str(refused.value).startswith(f"{flag}: The tenant's own limit is ")
    assert not ApiKey.objects.exists() and not AuditEvent.objects.filter(action="key.issue").exists()


def test_issuekey_within_or_without_a_limit_is_accepted(capped):
    run("issuekey", "acme", "--rpm", "100", "--budget", "10")
    run("issuekey", "acme")  # no key limit: the tenant's own still applies at admission
    assert list(ApiKey.objects.order_by("id").values_list("rpm", flat=True)) == [100, None]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--ips", "10.0.0.0/8,300.1.1.1", "--ips: '300.1.1.1' is not an IP address or CIDR range"),
        ("--models", "gpt-4o,has space", "--models: 'has space' is not a model name or family"),
        ("--models", "gpt-[4]o", "--models: 'gpt-[4]o' is not a model name or family"),
        ("--models", "*", "--models: '*' is not a model name or family"),
    ],
)
def test_issuekey_refuses_allow_lists_that_cannot_match(tenant, flag, value, message):
    with pytest.raises(CommandError, match="^" + message.replace("[", r"\[").replace("*", r"\*")):
        run("issuekey", "acme", flag, value)
    assert not ApiKey.objects.exists()


def test_allow_lists_are_stored_stripped_and_without_repeats(tenant):
    key = apikey_issue(
        tenant=tenant, allowed_models=[" gpt-4o* ", "gpt-4o*"], allowed_ips=["10.0.0.1 "]
    ).api_key
    assert key.allowed_models == ["gpt-4o*"] and ApiKey.objects.get(pk=key.pk).allowed_ips == ["10.0.0.1"]


def test_raising_a_keys_limit_above_its_tenants_is_refused_by_the_service(capped):
    key = apikey_issue(tenant=capped, rpm=50).api_key
    with pytest.raises(ValidationError) as refused:
        apikey_update(api_key=key, rpm=101)
    assert list(refused.value.message_dict) == ["rpm"]
    with pytest.raises(ValidationError):
        limits_set(target=key, max_concurrency=5)
    assert (
        ApiKey.objects.get(pk=key.pk).rpm == 50
        and not AuditEvent.objects.filter(action="key.update").exists()
    )


def test_lowering_a_tenants_limit_below_a_live_keys_is_refused_naming_the_keys(capped):
    greedy = apikey_issue(tenant=capped, rpm=80).api_key
    revoked = apikey_issue(tenant=capped, rpm=90).api_key
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValidationError) as refused:
        tenant_update(tenant=capped, rpm=60)
    message = refused.value.message_dict["rpm"][0]
    assert f"{greedy.key_id} (80)" in message and revoked.key_id not in message
    assert Tenant.objects.get(pk=capped.pk).rpm == 100
    tenant_update(tenant=capped, rpm=80)  # no live key above 80: accepted
    assert Tenant.objects.get(pk=capped.pk).rpm == 80


def test_a_tenant_limit_set_over_keys_without_limits_is_accepted(tenant):
    apikey_issue(tenant=tenant)
    assert tenant_update(tenant=tenant, rpm=10) == {"rpm": 10}


def test_services_refuse_fields_they_do_not_own(tenant, issued_key):
    with pytest.raises(TypeError, match="balance"):
        tenant_update(tenant=tenant, balance=Decimal(10**6))
    with pytest.raises(TypeError, match="held"):
        apikey_update(api_key=issued_key.api_key, held=Decimal(0))


@pytest.mark.django_db(transaction=True)
def test_manage_py_issuekey_above_the_tenants_limit_exits_non_zero_with_a_clear_message():
    """As an operator types it: a separate process on the same database, its exit code and stderr."""
    tenant = tenant_create(slug="acme")
    limits_set(target=tenant, rpm=100)
    db = connection.settings_dict
    database_url = make_conninfo(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, str(ROOT / "manage.py"), "issuekey", "acme", "--rpm", "100000"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1
    assert "--rpm: The tenant's own limit is 100; a key's may not be higher than that." in done.stderr
    assert "sk-" not in done.stdout and not ApiKey.objects.exists()
