from decimal import Decimal

import pytest
from django.core.management import CommandError

from tenants.authentication import key_authenticate
from tenants.models import LedgerEntry, Tenant
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
