"""A key's secret is shown once, in the answer that created it, and rests nowhere: not in any table (the
session and queue tables included), not in a cookie, not in a log line."""

import logging

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from tenants.authentication import key_authenticate
from tenants.models import ApiKey, Membership
from tests.helpers import database_dump, run_command
from tests.tenants.test_admin import shown_secret

pytestmark = pytest.mark.django_db


def secret_parts(secret: str) -> list[str]:
    """The whole key and its secret part alone (the key id before it is public)."""
    key_id = ApiKey.split(secret)[0]
    return [secret, secret.removeprefix(f"sk-{key_id}")]


@pytest.fixture
def sql_logged():
    """Every query and its parameters logged (django.db.backends at DEBUG), as with DEBUG on: whatever
    is written anywhere passes through the log too."""
    connection.force_debug_cursor = True
    yield
    connection.force_debug_cursor = False


def test_secrets_issued_and_rotated_in_the_admin_and_the_command_line_rest_nowhere(
    tenant, caplog, sql_logged
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")  # Django's own default stops its loggers at INFO
    admin = User.objects.create_user("acme-admin", password="x", is_staff=True)
    Membership.objects.create(user=admin, tenant=tenant, role="admin")
    client = Client()
    assert client.login(username="acme-admin", password="x")  # a real session row in django_session

    issued = client.post(
        "/admin/tenants/apikey/add/", {"tenant": tenant.pk, "name": "from-admin", "budget_period": "month"}
    )
    key = ApiKey.objects.get(name="from-admin")
    rotated = client.post(f"/admin/tenants/apikey/{key.pk}/rotate/")
    after = client.get("/admin/tenants/apikey/")  # whatever the admin queued for the next page is shown
    secrets = [shown_secret(issued), shown_secret(rotated)]
    cookies = " ".join(str(response.cookies) for response in (issued, rotated, after))

    printed = run_command("issuekey", tenant.slug, "--name", "from-cli").splitlines()[-1]
    secrets.append(printed)
    cli_key = ApiKey.objects.get(name="from-cli")
    secrets.append(run_command("rotatekey", cli_key.key_id, "--grace", "60").splitlines()[-1])

    # each one is a working key (so the search below looks for something real)
    assert [key_authenticate(secret).key_id for secret in secrets] == [
        key.key_id,
        key.key_id,
        cli_key.key_id,
        cli_key.key_id,
    ]
    dump = database_dump()  # every table of the schema, django_session and django-q's included
    session = Session.objects.get()
    assert session.session_key in dump and key.key_id in dump  # the dump covers sessions and keys
    logged = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    assert key.key_id in logged and "django_session" in logged  # the log holds the SQL of it all
    for secret in secrets:
        for part in secret_parts(secret):
            assert part not in dump, "a key secret rests in the database"
            assert part not in str(session.get_decoded())
            assert part not in logged, "a key secret was logged"
            assert part not in cookies, "a key secret rests in a cookie"
