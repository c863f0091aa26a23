"""Jobs of the worker cluster for tenants: plain functions, safe to run twice."""

from tenants.alerts import alert_send, deliveries_resume
from tenants.limits import rate_events_prune
from tenants.services import budgets_reset


def budgets_reset_job() -> int:
    return budgets_reset()


def rate_events_prune_job() -> int:
    return rate_events_prune()


def alert_send_job(alert_id: int) -> None:
    """Email an alert and deliver it to its webhook (tenants/alerts.py)."""
    alert_send(alert_id)


def webhook_deliveries_resume_job() -> int:
    return deliveries_resume()
