"""Every admin write goes through a service: it writes only what it changes and leaves an AuditEvent."""

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tasks.models import Channel, Model
from tasks.services import channel_add
from tenants.models import ApiKey, AuditEvent, ModelRuleOverride, Tenant
from tenants.services import apikey_issue
from tests.tenants.writes import admin_client, tenant_form, updated_columns

pytestmark = pytest.mark.django_db

MONEY = {"balance", "held", "period_spend", "period_started_at"}


def test_saving_a_tenant_writes_its_name_and_never_its_money(tenant):
    client = admin_client()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, name="Acme 2")
        )
    assert response.status_code == 302
    assert updated_columns(queries.captured_queries, "tenants_tenant") == {"name"}
    event = AuditEvent.objects.get(action="tenant.update")
    assert event.actor == "admin:root" and event.tenant == tenant
    assert event.details == {"before": {"name": "Acme"}, "after": {"name": "Acme 2"}}
    tenant.refresh_from_db()
    assert tenant.name == "Acme 2" and tenant.balance == Decimal(100)


def test_a_save_that_changes_nothing_writes_nothing_and_leaves_no_event(tenant):
    client = admin_client()
    with CaptureQueriesContext(connection) as queries:
        client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant))
    assert updated_columns(queries.captured_queries, "tenants_tenant") == set()
    assert (
        not AuditEvent.objects.filter(action__startswith="tenant.").exclude(action="tenant.create").exists()
    )


def test_suspending_a_tenant_in_the_admin_is_audited_and_refuses_its_keys(tenant, issued_key):
    admin_client().post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, status="suspended"))
    event = AuditEvent.objects.get(action="tenant.suspend")
    assert event.details == {"before": {"status": "active"}, "after": {"status": "suspended"}}
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued_key.secret}")
    assert api.get("/v1/models").json()["error"]["code"] == "tenant_suspended"


def test_tenant_limits_in_the_admin_cannot_fall_below_a_keys(tenant):
    key = apikey_issue(tenant=tenant, rpm=500).api_key
    response = admin_client().post(f"/admin/tenants/tenant/{tenant.pk}/change/", tenant_form(tenant, rpm=100))
    page = response.content.decode()
    assert response.status_code == 200 and key.key_id in page and "Lower or revoke them first" in page
    assert Tenant.objects.get(pk=tenant.pk).rpm is None


def test_a_tenant_added_in_the_admin_is_audited(db):
    form = {"slug": "initech", "name": "Initech", "status": "active", "group": "default", "rpm": 60}
    admin_client().post("/admin/tenants/tenant/add/", form | {"budget_period": "month"})
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.rpm == 60
    assert AuditEvent.objects.get(action="tenant.create", tenant=tenant).details["rpm"] == 60


def key_form(api_key: ApiKey, **changes: object) -> dict[str, object]:
    form = {
        "name": api_key.name,
        "allowed_models_text": ", ".join(api_key.allowed_models),
        "allowed_ips_text": ", ".join(api_key.allowed_ips),
        "budget_period": api_key.budget_period,
        "expires_at_0": "",
        "expires_at_1": "",
    }
    return form | changes


def test_a_keys_allow_lists_and_expiry_edited_in_the_admin_are_audited(tenant, issued_key):
    key = issued_key.api_key
    client = admin_client("admin", tenant)
    response = client.post(
        f"/admin/tenants/apikey/{key.pk}/change/",
        key_form(
            key,
            allowed_models_text="gpt-4o*, fake-model",
            allowed_ips_text="10.0.0.0/8",
            expires_at_0="2030-01-01",
            expires_at_1="00:00:00",
        ),
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.allowed_models == ["gpt-4o*", "fake-model"] and key.allowed_ips == ["10.0.0.0/8"]
    event = AuditEvent.objects.get(action="key.update")
    assert event.actor == "admin:admin-acme" and event.target == f"key {key.key_id}"
    assert event.details["before"] == {"allowed_models": [], "allowed_ips": [], "expires_at": None}
    assert event.details["after"]["allowed_ips"] == ["10.0.0.0/8"]
    assert event.details["after"]["expires_at"].startswith("2030-01-01")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_ips_text", "10.0.0.0/8, not-an-ip", "not an IP address or CIDR range"),
        ("allowed_models_text", "gpt 4o", "not a model name or family"),
        ("allowed_models_text", "**", "not a model name or family"),
        ("rpm", "500", "own limit is 100"),
    ],
)
def test_the_key_form_shows_the_services_rules_on_the_field(tenant, issued_key, field, value, message):
    Tenant.objects.filter(pk=tenant.pk).update(rpm=100)
    key = issued_key.api_key
    response = admin_client().post(f"/admin/tenants/apikey/{key.pk}/change/", key_form(key, **{field: value}))
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert not AuditEvent.objects.filter(action="key.update").exists()


@pytest.fixture
def channel(db) -> Channel:
    return channel_add(
        name="main",
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-upstream-old",
        model_names=["gpt-4o"],
    )


def channel_form(channel: Channel, **changes: object) -> dict[str, object]:
    form = {
        "name": channel.name,
        "provider": channel.provider,
        "base_url": channel.base_url,
        "served_models": [m.pk for m in channel.served_models.all()],
        "model_mapping": json.dumps(channel.model_mapping),
        "priority": channel.priority,
        "weight": channel.weight,
        "enabled": "on",
        "new_api_key": "",
    }
    return form | changes


def test_a_channel_edit_keeps_the_breaker_state_and_audits_the_key_without_its_value(channel):
    Channel.objects.filter(pk=channel.pk).update(circuit_state="open", circuit_reason="5 of 5 calls failed")
    client = admin_client()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            f"/admin/tasks/channel/{channel.pk}/change/",
            channel_form(channel, base_url="http://127.0.0.1:10/v1", new_api_key="sk-upstream-new"),
        )
    assert response.status_code == 302
    assert updated_columns(queries.captured_queries, "tasks_channel") == {"base_url", "api_key_encrypted"}
    channel.refresh_from_db()
    assert (channel.circuit_state, channel.circuit_reason) == ("open", "5 of 5 calls failed")
    assert channel.api_key == "sk-upstream-new" and channel.base_url == "http://127.0.0.1:10/v1"
    event = AuditEvent.objects.get(action="channel.update")
    assert event.details == {
        "before": {"base_url": "http://127.0.0.1:9/v1", "api_key": "changed"},
        "after": {"base_url": "http://127.0.0.1:10/v1", "api_key": "changed"},
    }
    assert "sk-upstream" not in json.dumps(list(AuditEvent.objects.values("details")))


def test_a_channels_served_models_edited_in_the_admin_are_audited(channel):
    other = Model.objects.create(name="gpt-4o-mini")
    admin_client().post(
        f"/admin/tasks/channel/{channel.pk}/change/",
        channel_form(channel, served_models=[other.pk]),
    )
    assert list(channel.served_models.values_list("name", flat=True)) == ["gpt-4o-mini"]
    event = AuditEvent.objects.get(action="channel.models")
    assert event.details == {"before": {"models": ["gpt-4o"]}, "after": {"models": ["gpt-4o-mini"]}}
    assert not AuditEvent.objects.filter(action="channel.update").exists()


def test_a_channel_added_in_the_admin_goes_through_channel_add(db):
    model = Model.objects.create(name="gpt-4o")
    form = {"name": "new", "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model_mapping": "{}"}
    form |= {"priority": 0, "weight": 1, "enabled": "on", "served_models": [model.pk], "new_api_key": "k1"}
    admin_client().post("/admin/tasks/channel/add/", form)
    channel = Channel.objects.get(name="new")
    assert channel.api_key == "k1" and list(channel.served_models.all()) == [model]
    assert AuditEvent.objects.filter(action="channel.add", target="channel new").exists()


CREATED = {"created_at_0": "2026-01-01", "created_at_1": "00:00:00"}  # shown, never written by the services


def test_catalog_override_and_membership_edits_in_the_admin_are_audited(tenant):
    client = admin_client()
    model = Model.objects.create(name="gpt-4o", capabilities=["text"])
    client.post(
        f"/admin/tasks/model/{model.pk}/change/",
        {
            "name": "gpt-4o",
            "kind": "chat",
            "capabilities": '["text", "vision"]',
            "max_output_tokens": "4096",
            "enabled": "on",
        }
        | {"prices-TOTAL_FORMS": "0", "prices-INITIAL_FORMS": "0"}
        | CREATED,
    )
    model_event = AuditEvent.objects.get(action="model.update")
    assert model_event.details["after"] == {"capabilities": ["text", "vision"], "max_output_tokens": 4096}

    client.post(
        "/admin/tenants/modelruleoverride/add/",
        {"tenant": tenant.pk, "model_pattern": "gpt-4o*", "max_output_tokens": "100", "reasoning": ""}
        | CREATED,
    )
    override = ModelRuleOverride.objects.get(tenant=tenant)
    client.post(
        f"/admin/tenants/modelruleoverride/{override.pk}/change/",
        {"tenant": tenant.pk, "model_pattern": "gpt-4o*", "max_output_tokens": "50", "reasoning": ""}
        | CREATED,
    )
    assert AuditEvent.objects.filter(action="override.add", tenant=tenant).exists()
    assert AuditEvent.objects.get(action="override.update").details == {
        "before": {"max_output_tokens": 100},
        "after": {"max_output_tokens": 50},
    }

    from django.contrib.auth.models import User

    user = User.objects.create_user("dana")
    client.post(
        "/admin/tenants/membership/add/", {"user": user.pk, "tenant": tenant.pk, "role": "viewer"} | CREATED
    )
    membership = user.memberships.get()
    client.post(
        f"/admin/tenants/membership/{membership.pk}/change/",
        {"user": user.pk, "tenant": tenant.pk, "role": "admin"} | CREATED,
    )
    assert AuditEvent.objects.get(action="member.add").details == {"role": "viewer"}
    assert AuditEvent.objects.get(action="member.update").details == {
        "before": {"role": "viewer"},
        "after": {"role": "admin"},
    }
