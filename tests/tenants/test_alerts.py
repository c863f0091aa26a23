"""Budget and balance alerts: fired once per crossing, emailed, and POSTed signed to a local HTTPS
receiver, a failed attempt retried."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from foxgate import webhooks
from tenants.alerts import (
    alert_rule_save,
    alert_send,
    alerts_fire,
    deliveries_resume,
    webhook_endpoint_add,
)
from tenants.models import Alert, AlertRule, ApiKey, AuditEvent, Tenant, WebhookDelivery, WebhookEndpoint
from tenants.services import apikey_issue, budgets_reset, credits_topup, tenant_create
from tests.webhooks import Receiver

pytestmark = pytest.mark.django_db(transaction=True)  # the receiver answers from another thread


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/x", "https"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://127.0.0.1:8443/hook", "private"),
        ("https://localhost/hook", "private"),  # a name: refused after DNS resolution
    ],
)
def test_a_webhook_must_be_https_to_a_public_address(settings, url, problem):
    settings.ALLOW_PRIVATE_WEBHOOKS = False
    with pytest.raises(ValidationError, match=problem):
        webhooks.url_check(url, resolve=True)
    with pytest.raises(ValidationError):
        webhook_endpoint_add(tenant=tenant_create(slug="hooked"), url=url)
    assert not WebhookEndpoint.objects.exists()


def budget_rule(tenant: Tenant, endpoint: WebhookEndpoint, percent: int = 80) -> AlertRule:
    return alert_rule_save(
        rule=AlertRule(
            tenant=tenant,
            kind=AlertRule.Kind.BUDGET,
            threshold=Decimal(percent),
            webhook=endpoint,
            email="finance@example.com",
        )
    )


def test_a_budget_alert_is_signed_retried_after_a_500_emailed_and_sent_once_per_period(private_webhooks):
    tenant = tenant_create(slug="acme", credits=Decimal(10), budget=Decimal(1))
    key = apikey_issue(tenant=tenant).api_key
    with Receiver(private_webhooks, statuses=[500]) as receiver:
        endpoint = webhook_endpoint_add(tenant=tenant, url=receiver.url)
        rule = budget_rule(tenant, endpoint)
        Tenant.objects.filter(pk=tenant.pk).update(period_spend=Decimal("0.79"))
        assert alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk) == []  # below 80 %
        Tenant.objects.filter(pk=tenant.pk).update(period_spend=Decimal("0.80"))
        (alert_id,) = alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk)
        assert alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk) == []  # crossed already
        alert_send(alert_id, background=False)
        first, second = receiver.wait_for(2)

    assert first.signed_by(endpoint.secret) and second.signed_by(endpoint.secret)
    assert not first.signed_by("another secret")
    payload = second.json()
    assert payload | {"alert_id": 0, "fired_at": ""} == {
        "type": "budget.threshold_crossed",
        "alert_id": 0,
        "tenant": "acme",
        "key_id": None,
        "threshold": "80.000000",
        "unit": "percent",
        "budget": "1.000000",
        "period_spend": "0.800000",
        "balance": "10.000000",
        "fired_at": "",
    }
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "delivered" and [a["status_code"] for a in delivery.attempts] == [500, 200]
    (email,) = mail.outbox
    assert email.to == ["finance@example.com"] and "acme" in email.subject
    assert json.loads(email.body) == payload

    # a new budget period re-arms the rule
    Tenant.objects.filter(pk=tenant.pk).update(period_started_at=timezone.now() - timedelta(days=40))
    budgets_reset()
    Tenant.objects.filter(pk=tenant.pk).update(period_spend=Decimal("0.9"))
    assert len(alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk)) == 1
    assert Alert.objects.filter(rule=rule).count() == 2
    assert AuditEvent.objects.filter(action__in=["webhook.add", "alert_rule.add"]).count() == 2


def test_a_balance_alert_fires_below_its_amount_and_a_top_up_rearms_it(settings):
    tenant = tenant_create(slug="lowfunds", credits=Decimal(5))
    key = apikey_issue(tenant=tenant).api_key
    alert_rule_save(
        rule=AlertRule(
            tenant=tenant, kind=AlertRule.Kind.BALANCE, threshold=Decimal(2), email="ops@example.com"
        )
    )
    assert alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk) == []
    Tenant.objects.filter(pk=tenant.pk).update(balance=Decimal("1.5"))
    assert len(alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk)) == 1
    assert alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk) == []
    credits_topup(tenant=tenant, amount=Decimal("0.1"))  # still below: a new crossing all the same
    assert len(alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk)) == 1


def test_a_rule_on_a_key_watches_that_keys_budget(settings):
    tenant = tenant_create(slug="keyed", credits=Decimal(5))
    capped = apikey_issue(tenant=tenant, budget=Decimal(1)).api_key
    other = apikey_issue(tenant=tenant).api_key
    alert_rule_save(
        rule=AlertRule(
            tenant=tenant,
            api_key=capped,
            kind=AlertRule.Kind.BUDGET,
            threshold=Decimal(50),
            email="a@example.com",
        )
    )
    ApiKey.objects.filter(pk=capped.pk).update(period_spend=Decimal("0.5"))
    assert alerts_fire(tenant_id=tenant.pk, api_key_id=other.pk) == []  # another key's charge
    assert len(alerts_fire(tenant_id=tenant.pk, api_key_id=capped.pk)) == 1
    with pytest.raises(ValidationError, match="percentage"):
        alert_rule_save(
            rule=AlertRule(tenant=tenant, kind=AlertRule.Kind.BUDGET, threshold=Decimal(150), email="a@b.c")
        )


def test_a_delivery_a_dead_process_left_pending_is_resumed(private_webhooks):
    tenant = tenant_create(slug="resumed", credits=Decimal(10), budget=Decimal(1))
    key = apikey_issue(tenant=tenant).api_key
    with Receiver(private_webhooks) as receiver:
        endpoint = webhook_endpoint_add(tenant=tenant, url=receiver.url)
        budget_rule(tenant, endpoint)
        Tenant.objects.filter(pk=tenant.pk).update(period_spend=Decimal("0.9"))
        (alert_id,) = alerts_fire(tenant_id=tenant.pk, api_key_id=key.pk)
        # the process that created the delivery died before its first attempt
        WebhookDelivery.objects.create(
            alert_id=alert_id, endpoint=endpoint, created_at=timezone.now() - timedelta(minutes=5)
        )
        assert deliveries_resume() == 1
        (received,) = receiver.wait_for(1)
    assert received.json()["alert_id"] == alert_id and WebhookDelivery.objects.get().status == "delivered"
    assert deliveries_resume() == 0
