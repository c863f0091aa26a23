"""Budget and balance alerts: a tenant hears about a budget before the 402, not after.

An AlertRule watches the share of the tenant's (or one key's) budget spent this period, or the tenant's
balance. Every settlement of a watched tenant's task runs one statement (FIRE) that inserts an Alert for
each rule whose threshold is now crossed, unique per rule and crossing: the budget period it happened in,
or for a balance the last top-up before it fell. However many charges of however many processes cross a
threshold together, one insert wins and the others find the row there, so each crossing alerts once. A
new period or a top-up re-arms the rule.

An alert is sent from the worker cluster (tenants/jobs.py): emailed through Django's mail backend, and
POSTed as JSON to the rule's webhook, signed with the endpoint's secret and retried as foxgate/webhooks.py
says; each attempt is recorded on the WebhookDelivery, the admin's delivery log.
"""

import json
import logging
import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from foxgate import webhooks
from tenants.models import Alert, AlertRule, Tenant, WebhookDelivery, WebhookEndpoint
from tenants.services import SYSTEM, Actor, audit_record

logger = logging.getLogger(__name__)


FIRE = """
WITH watched AS (
    SELECT r.id AS rule_id, r.tenant_id, r.kind, r.threshold, t.balance AS funds,
        CASE WHEN r.api_key_id IS NULL THEN t.budget ELSE k.budget END AS budget,
        CASE WHEN r.api_key_id IS NULL THEN t.period_spend ELSE k.period_spend END AS spent,
        CASE WHEN r.api_key_id IS NULL THEN t.period_started_at ELSE k.period_started_at END AS started,
        (SELECT max(l.id) FROM tenants_ledgerentry l WHERE l.tenant_id = t.id AND l.kind = 'topup') AS topup
    FROM tenants_alertrule r
    JOIN tenants_tenant t ON t.id = r.tenant_id
    LEFT JOIN tenants_apikey k ON k.id = r.api_key_id
    WHERE r.tenant_id = %(tenant)s AND r.enabled AND (r.api_key_id IS NULL OR r.api_key_id = %(key)s)
), crossed AS (
    SELECT rule_id,
        CASE kind
            WHEN 'budget' THEN 'period:' || to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
            ELSE 'topup:' || coalesce(topup, 0)
        END AS crossing,
        jsonb_build_object('threshold', threshold::text, 'balance', funds::text, 'budget', budget::text,
            'period_spend', spent::text) AS details
    FROM watched
    WHERE CASE kind WHEN 'budget' THEN budget > 0 AND spent * 100 >= budget * threshold
        ELSE funds < threshold END
)
INSERT INTO tenants_alert (rule_id, crossing, details, fired_at)
SELECT rule_id, crossing, details, now() FROM crossed
ON CONFLICT (rule_id, crossing) DO NOTHING
RETURNING id
"""


def alerts_fire(*, tenant_id: int, api_key_id: int, watched: bool | None = None) -> list[int]:
    """After a charge: the alerts it set off (each crossing once, whoever else charged at the same time).
    `watched` says whether the tenant has a rule, when the
    caller read it already (the engine's claim did); a tenant without rules costs nothing more."""
    if watched is None:
        watched = AlertRule.objects.filter(tenant_id=tenant_id, enabled=True).exists()
    if not watched:
        return []
    with connection.cursor() as cursor:
        cursor.execute(FIRE, {"tenant": tenant_id, "key": api_key_id})
        return [row[0] for row in cursor.fetchall()]


def alerts_send_later(alert_ids: list[int]) -> None:
    """Queue each alert for the worker cluster to send (`alert_send`)."""
    for alert_id in alert_ids:
        async_task("tenants.jobs.alert_send_job", alert_id, task_name=f"alert-{alert_id}")


def alert_payload(alert: Alert) -> dict[str, Any]:
    rule = alert.rule
    return {
        "type": f"{rule.kind}.threshold_crossed",
        "alert_id": alert.pk,
        "tenant": alert.rule.tenant.slug,
        "key_id": rule.api_key.key_id if rule.api_key_id else None,
        "threshold": str(rule.threshold),
        "unit": "percent" if rule.kind == AlertRule.Kind.BUDGET else "credits",
        **alert.details,
        "fired_at": alert.fired_at.isoformat(),
    }


def alert_send(alert_id: int, *, background: bool = True) -> None:
    """Email the alert and deliver it to its webhook: in a thread (`background`), so the worker is free
    at once; a delivery its process did not finish is taken up again by `deliveries_resume`."""
    alert = Alert.objects.select_related("rule__tenant", "rule__api_key", "rule__webhook").get(pk=alert_id)
    payload = alert_payload(alert)
    rule = alert.rule
    # Each is claimed before it is sent, so a job delivered twice sends once (an email at most once).
    unsent = Alert.objects.filter(pk=alert.pk, emailed_at__isnull=True)
    if rule.email and unsent.update(emailed_at=timezone.now()):
        send_mail(
            subject=f"FoxGate alert for {rule.tenant.slug}: {rule}",
            message=json.dumps(payload, indent=2),
            from_email=None,
            recipient_list=[rule.email],
        )
    if rule.webhook is not None and rule.webhook.enabled:
        delivery, created = WebhookDelivery.objects.get_or_create(alert=alert, endpoint=rule.webhook)
        if not created:
            return  # another delivery of this job is sending it (or `deliveries_resume` will)
        send = webhooks.deliver_in_background if background else webhooks.deliver
        send(delivery, url=rule.webhook.url, secret=rule.webhook.secret, payload=payload)


def webhook_endpoint_add(*, tenant: Tenant, url: str, actor: Actor = SYSTEM) -> WebhookEndpoint:
    """A tenant's new webhook, with a fresh signing secret; a URL the deliveries would refuse is refused
    now."""
    webhooks.url_check(url, resolve=True)
    endpoint = WebhookEndpoint(tenant=tenant, url=url)
    endpoint.secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint.save()
        audit_record(actor=actor, action="webhook.add", tenant=tenant, target=f"webhook {url}")
    return endpoint


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, enabled: bool, actor: Actor = SYSTEM) -> None:
    endpoint.enabled = enabled
    with transaction.atomic():
        endpoint.save(update_fields=["enabled"])
        audit_record(
            actor=actor,
            action="webhook.update",
            tenant=endpoint.tenant,
            target=f"webhook {endpoint.url}",
            details={"enabled": enabled},
        )


def alert_rule_check(rule: AlertRule) -> None:
    """A rule's key and webhook are its tenant's, and a budget threshold is a percentage."""
    for name, related in (("api_key", rule.api_key), ("webhook", rule.webhook)):
        if related is not None and related.tenant_id != rule.tenant_id:
            raise ValidationError({name: "must be one of the rule's tenant"})
    if rule.kind == AlertRule.Kind.BUDGET and not 0 < rule.threshold <= 100:
        raise ValidationError(
            {"threshold": "a budget alert's threshold is a percentage, above 0 and at most 100"}
        )
    if not (rule.webhook or rule.email):
        raise ValidationError({"email": "a rule needs a webhook, an email address or both"})


def alert_rule_save(*, rule: AlertRule, actor: Actor = SYSTEM) -> AlertRule:
    """Add or change a rule, checked (`alert_rule_check`) and audited."""
    alert_rule_check(rule)
    action = "alert_rule.update" if rule.pk else "alert_rule.add"
    with transaction.atomic():
        rule.save()
        audit_record(
            actor=actor,
            action=action,
            tenant=rule.tenant,
            target=f"alert rule {rule}",
            details={"kind": rule.kind, "threshold": str(rule.threshold), "email": rule.email},
        )
    return rule


def deliveries_resume() -> int:
    """Take up deliveries a dead process left pending (scheduled): those not attempted for a minute."""
    since = timezone.now() - timedelta(minutes=1)
    resumed = 0
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, created_at__lt=since)
    for delivery in pending.select_related("endpoint", "alert__rule__tenant", "alert__rule__api_key"):
        if webhooks.stale(delivery, since):
            endpoint = delivery.endpoint
            webhooks.deliver(
                delivery, url=endpoint.url, secret=endpoint.secret, payload=alert_payload(delivery.alert)
            )
            resumed += 1
    return resumed
