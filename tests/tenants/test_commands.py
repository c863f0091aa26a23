from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError
from django.utils import timezone

from tenants.authentication import key_authenticate, key_cache
from tenants.models import ApiKey, AuditEvent, LedgerEntry, Tenant
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db


def test_createtenant_with_credits_writes_a_topup_line():
    run("createtenant", "acme", "--name", "Acme Corp", "--credits", "25.5")
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Corp" and tenant.balance == Decimal("25.5")
    topup = LedgerEntry.objects.get(tenant=tenant)
    assert topup.kind == "topup" and topup.amount == Decimal("25.5")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad slug!"], "SLUG"),
        (["acme", "--credits", "lots"], "--credits"),
        (["acme", "--credits", "-5"], "--credits"),
        (["acme", "--credits", "NaN"], "--credits"),
    ],
)
def test_createtenant_rejects_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("createtenant", *args)
    assert not Tenant.objects.exists()


def test_createtenant_refuses_a_duplicate():
    run("createtenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("createtenant", "acme")


def test_issuekey_prints_a_working_secret_alone_on_the_last_line():
    run("createtenant", "acme")
    secret = run("issuekey", "acme", "--name", "ci").strip().splitlines()[-1]
    assert secret.startswith("sk-") and " " not in secret
    assert key_authenticate(secret).tenant.slug == "acme"


def test_issuekey_for_unknown_tenant_fails():
    with pytest.raises(CommandError, match="no tenant 'ghost'"):
        run("issuekey", "ghost")


def test_topup_adds_a_ledger_line_and_an_audit_event():
    run("createtenant", "acme", "--credits", "10")
    out = run("topup", "acme", "5.25", "--memo", "invoice 42")
    assert "balance 15.25" in out
    line = LedgerEntry.objects.filter(tenant__slug="acme").latest("id")
    assert (line.kind, line.amount, line.memo) == ("topup", Decimal("5.25"), "invoice 42")
    event = AuditEvent.objects.filter(action="credits.topup").latest("id")
    assert event.actor.startswith("cli:") and event.source and event.details["amount"] == "5.25"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost", "5"], "no tenant"),
        (["acme", "0"], "more than zero"),
        (["acme", "-3"], "non-negative"),
        (["acme", "abc"], "number"),
    ],
)
def test_topup_rejects_bad_input(args, message):
    run("createtenant", "acme")
    with pytest.raises(CommandError, match=message):
        run("topup", *args)


def test_issuekey_flags_set_the_keys_rules():
    run("createtenant", "acme")
    out = run(
        "issuekey",
        "acme",
        "--models",
        "gpt-4o*,claude-*",
        "--ips",
        "10.0.0.0/8",
        "--rpm",
        "60",
        "--tpm",
        "10000",
        "--concurrency",
        "4",
        "--budget",
        "12.5",
        "--budget-period",
        "day",
        "--expires",
        "30d",
    )
    key = key_authenticate(out.strip().splitlines()[-1], client_ip="10.0.0.1")
    assert key.allowed_models == ["gpt-4o*", "claude-*"] and key.allowed_ips == ["10.0.0.0/8"]
    assert (key.rpm, key.tpm, key.max_concurrency, key.budget, key.budget_period) == (
        60,
        10000,
        4,
        Decimal("12.5"),
        "day",
    )
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert AuditEvent.objects.get(action="key.issue").details["rpm"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rpm", "0"], "rpm"),
        (["--ips", "not-an-ip"], "--ips"),
        (["--expires", "yesterday"], "--expires"),
        (["--expires", "2001-01-01"], "future"),
        (["--budget", "lots"], "--budget"),
    ],
)
def test_issuekey_rejects_bad_flags(args, message):
    run("createtenant", "acme")
    with pytest.raises(CommandError, match=message):
        run("issuekey", "acme", *args)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("by", ["key_id", "whole_key"])
def test_revokekey_takes_the_id_or_the_whole_leaked_key(by):
    run("createtenant", "acme")
    secret = run("issuekey", "acme").strip().splitlines()[-1]
    key = key_authenticate(secret)
    run("revokekey", key.key_id if by == "key_id" else secret)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert AuditEvent.objects.filter(action="key.revoke", target=f"key {key.key_id}").exists()
    with pytest.raises(CommandError, match="no API key"):
        run("revokekey", "nosuchkeyid1")


def test_rotatekey_prints_a_new_secret_and_keeps_the_old_for_the_grace():
    run("createtenant", "acme")
    old = run("issuekey", "acme").strip().splitlines()[-1]
    new = run("rotatekey", old, "--grace", "60").strip().splitlines()[-1]
    assert new != old and new.startswith("sk-")
    key_cache.clear()
    assert key_authenticate(new).pk == key_authenticate(old).pk
    with pytest.raises(CommandError, match="--grace"):
        run("rotatekey", new, "--grace", "-1")
