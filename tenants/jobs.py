"""Scheduled jobs of the worker cluster for tenants: plain functions, safe to run twice."""

from tenants.limits import rate_events_prune
from tenants.services import budgets_reset


def budgets_reset_job() -> int:
    return budgets_reset()


def rate_events_prune_job() -> int:
    return rate_events_prune()
