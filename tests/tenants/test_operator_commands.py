"""listtenants, listkeys and genkeys: grep-friendly output an operator can script against."""

import re
import subprocess
import sys
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError
from django.utils import timezone

from tenants.models import ApiKey, AuditEvent
from tenants.services import apikey_issue, apikey_revoke, limits_set, tenant_create
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_listtenants_prints_one_aligned_row_per_tenant_under_a_header():
    acme = tenant_create(slug="acme", name="Acme Corp", credits=Decimal("12.5"))
    tenant_create(slug="globex", credits=Decimal(0))
    limits_set(target=acme, rpm=60, budget=Decimal(100))
    apikey_issue(tenant=acme)
    apikey_revoke(api_key=apikey_issue(tenant=acme).api_key)
    out = run("listtenants")
    lines = out.strip().splitlines()
    assert rows(out)[0] == [
        "SLUG",
        "STATUS",
        "GROUP",
        "BALANCE",
        "HELD",
        "AVAILABLE",
        "KEYS",
        "RPM",
        "BUDGET",
        "NAME",
    ]
    acme_row = ["acme", "active", "default", "12.500000", "0.000000", "12.500000", "1", "60"]
    assert rows(out)[1] == [*acme_row, "100.000000/month", "Acme", "Corp"]
    assert rows(out)[2][:8] == ["globex", "active", "default", "0.000000", "0.000000", "0.000000", "0", "-"]
    # aligned: every column starts at the same offset on every line
    assert len({line.index(line.split()[1]) for line in lines}) == 1


def test_listkeys_shows_each_keys_state_and_rules_but_never_a_secret(tenant):
    live = apikey_issue(
        tenant=tenant, name="ci bot", rpm=10, allowed_models=["gpt-4o*"], allowed_ips=["10.0.0.0/8"]
    )
    revoked = apikey_issue(tenant=tenant)
    apikey_revoke(api_key=revoked.api_key)
    expired = apikey_issue(tenant=tenant, expires_at=timezone.now())
    out = run("listkeys", "acme")
    table = {row[0]: row for row in rows(out)[1:]}
    assert rows(out)[0][:3] == ["KEY_ID", "STATE", "RPM"]
    assert table[live.api_key.key_id][:8] == [
        live.api_key.key_id,
        "active",
        "10",
        "-",
        "-",
        "-",
        "gpt-4o*",
        "10.0.0.0/8",
    ]
    assert table[live.api_key.key_id][-2:] == ["ci", "bot"]
    assert table[revoked.api_key.key_id][1] == "revoked" and table[expired.api_key.key_id][1] == "expired"
    assert all(issued.secret not in out for issued in (live, revoked, expired))
    assert [row[0] for row in rows(out)[1:]] == [
        live.api_key.key_id,
        revoked.api_key.key_id,
        expired.api_key.key_id,
    ]


def test_listkeys_for_unknown_tenant_fails():
    with pytest.raises(CommandError, match="no tenant 'ghost'"):
        run("listkeys", "ghost")


def test_genkeys_prints_fresh_values_the_settings_accept():
    first, second = run("genkeys"), run("genkeys", "--pepper-id", "p2")
    values = dict(line.split("=", 1) for line in first.strip().splitlines())
    assert list(values) == ["FOXGATE_SECRET_KEY", "FOXGATE_API_KEY_PEPPERS", "FOXGATE_SECRET_KEYS"]
    assert len(values["FOXGATE_SECRET_KEY"]) >= 50 and values["FOXGATE_SECRET_KEY"] not in second
    assert re.fullmatch(r"\d{8}=[A-Za-z0-9_-]{40,}", values["FOXGATE_API_KEY_PEPPERS"])
    assert "FOXGATE_API_KEY_PEPPERS=p2=" in second
    Fernet(values["FOXGATE_SECRET_KEYS"].encode())  # a valid key, or this raises
    # A production process starts with them (it refuses the development defaults).
    env = {
        **values,
        "FOXGATE_PRODUCTION": "1",
        "FOXGATE_ALLOWED_HOSTS": "gw.example",
        "DATABASE_URL": "postgresql://foxgate@127.0.0.1:1/foxgate",  # setup only: never connected to
        "PATH": "/usr/bin:/bin",
    }
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='foxgate.settings'; django.setup()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr[-2000:]


def test_genkeys_refuses_a_pepper_id_the_settings_cannot_parse():
    with pytest.raises(CommandError, match="--pepper-id"):
        run("genkeys", "--pepper-id", "a=b")
    assert not ApiKey.objects.exists()


def test_revoking_a_revoked_key_again_says_so_and_leaves_no_second_event(tenant, issued_key):
    key_id = issued_key.api_key.key_id
    assert run("revokekey", key_id).startswith(f"revoked key {key_id}")
    assert "was already revoked" in run("revokekey", key_id)
    assert AuditEvent.objects.filter(action="key.revoke").count() == 1
