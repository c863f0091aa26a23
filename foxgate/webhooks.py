"""Signed webhooks, for alerts (tenants/alerts.py) and task callbacks (tasks/callbacks.py): where one may go,
how it is signed, and its delivery with retries, every attempt recorded.

A webhook is POSTed as JSON with `X-FoxGate-Timestamp: <unix seconds>` and `X-FoxGate-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, so a receiver checks both the body and its
age. Its URL is HTTPS, and its host must not be a private, loopback, link-local or otherwise reserved
address (unless FOXGATE_ALLOW_PRIVATE_WEBHOOKS=1): checked when the URL is given, and again, after DNS
resolution, before every attempt. A failed attempt (a timeout, an error, a status other than 2xx) is
retried after 1, 2 and 4 seconds.
"""

import functools
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

RETRY_BACKOFF = (1, 2, 4)  # seconds before the second, third and fourth attempt
TIMEOUT = 10.0
URL_MAX_LENGTH = 2048


def url_check(url: str, *, resolve: bool) -> None:
    """Refuse a webhook URL that is not HTTPS, or whose host is a private, loopback, link-local or
    reserved address: an address as written, and with `resolve` every address its name resolves to."""
    if len(url) > URL_MAX_LENGTH:
        raise ValidationError(f"must be at most {URL_MAX_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationError("must be an https:// URL")
    if settings.ALLOW_PRIVATE_WEBHOOKS:
        return
    try:
        addresses = [ipaddress.ip_address(parts.hostname)]
    except ValueError:
        if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
            raise ValidationError(f"its host is a private or reserved address ({parts.hostname})") from None
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise ValidationError(f"its host does not resolve: {error}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global or address.is_multicast:
            raise ValidationError(f"its host is a private or reserved address ({address})")


def signature(secret: str, timestamp: str, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-FoxGate-Timestamp": timestamp,
        "X-FoxGate-Signature": f"t={timestamp},v1={signature(secret, timestamp, body)}",
    }


def post(url: str, secret: str, body: str) -> dict[str, Any]:
    """One attempt: {"status_code": N}, or {"error": why} when it was refused or failed."""
    try:
        url_check(url, resolve=True)
    except ValidationError as refused:
        return {"error": refused.messages[0]}
    try:
        response = httpx.post(
            url,
            content=body,
            headers=signed_headers(secret, body),
            timeout=TIMEOUT,
            verify=_tls(settings.WEBHOOK_CA_BUNDLE),
        )
    except httpx.HTTPError as error:
        return {"error": f"{type(error).__name__}: {error}"[:300]}
    return {"status_code": response.status_code}


@functools.cache
def _tls(ca_bundle: str) -> ssl.SSLContext:
    """The usual certificate authorities, and FOXGATE_WEBHOOK_CA_BUNDLE's (a company CA) besides."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(ca_bundle)
    return context


def deliver(delivery: Any, *, url: str, secret: str, payload: dict[str, Any]) -> str:
    """POST `payload` until the URL answers 2xx, retrying after RETRY_BACKOFF; each attempt recorded on
    `delivery` (a tenants.models.DeliveryLog). Answers the delivery's final status."""
    body = json.dumps(payload, separators=(",", ":"))
    for attempt, pause in enumerate((0, *RETRY_BACKOFF)):
        time.sleep(pause)
        outcome = post(url, secret, body)
        delivery.attempts.append({"at": timezone.now().isoformat(), **outcome})
        if outcome.get("status_code", 0) // 100 == 2:
            delivery.status, delivery.delivered_at = delivery.Status.DELIVERED, timezone.now()
        elif attempt == len(RETRY_BACKOFF):
            delivery.status = delivery.Status.FAILED
        delivery.save(update_fields=["attempts", "status", "delivered_at"])
        if delivery.status != delivery.Status.PENDING:
            break
    return delivery.status


def deliver_in_background(delivery: Any, **target: Any) -> None:
    """`deliver` in a thread of its own, so the worker that queued it is free at once; a delivery its
    process did not finish is left pending, for its resume job to take up."""

    def run() -> None:
        try:
            deliver(delivery, **target)
        finally:
            connections.close_all()  # this thread's own connection

    threading.Thread(target=run, daemon=True).start()


def stale(delivery: Any, since: datetime) -> bool:
    """A pending delivery no process has attempted since `since` (its process died)."""
    if delivery.created_at >= since:
        return False
    return not delivery.attempts or datetime.fromisoformat(delivery.attempts[-1]["at"]) < since
