"""Bearer API key authentication for the public API."""

import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from foxgate.errors import AuthenticationError, PermissionDenied
from foxgate.logs import set_tenant
from tenants.models import ApiKey, Tenant

_INVALID = "Invalid API key."
LAST_USED_EVERY = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer sk-...`. On success `request.user` is the ApiKey and `request.auth` its tenant.

    An unknown key id, a wrong secret for a real key id and a revoked key all get the same answer after
    the same work, so the response tells an attacker nothing about which key ids exist.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKey, Tenant] | None:
        secret = self.secret(request)
        if secret is None:
            return None
        api_key = key_authenticate(secret, client_ip=request.META.get("REMOTE_ADDR", ""))
        set_tenant(api_key.tenant.slug)
        return api_key, api_key.tenant

    def secret(self, request: Request) -> str | None:
        """The key the request carries, None if it carries none."""
        header = get_authorization_header(request).decode("latin-1").split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower() or len(header) != 2:
            raise AuthenticationError("Malformed Authorization header: send 'Authorization: Bearer sk-...'.")
        return header[1]

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class AnthropicKeyAuthentication(ApiKeyAuthentication):
    """Anthropic's `x-api-key: sk-...` header, which its SDK and tools send; else the Bearer header."""

    def secret(self, request: Request) -> str | None:
        secret = request.headers.get("x-api-key")
        return super().secret(request) if secret is None else secret.strip()


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key: sk-<key id><secret>"}


class AnthropicKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = AnthropicKeyAuthentication
    name = "AnthropicApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "An API key: sk-..."}

    def get_security_requirement(self, auto_schema: object) -> list[dict[str, list]]:
        return [{"AnthropicApiKey": []}, {"ApiKey": []}]  # either header


class KeyCache:
    """Keys looked up in the last KEY_CACHE_SECONDS, per process.

    Short enough that a key revoked or expired anywhere is refused by every process within that time,
    long enough to spare the database a lookup on every request of a busy key."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get(key_id)
        if cached and cached[0] > now:
            return cached[1]
        api_key = ApiKey.objects.select_related("tenant").filter(key_id=key_id).first()
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[key_id] = (now + settings.KEY_CACHE_SECONDS, api_key)
        return api_key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


key_cache = KeyCache()


def key_authenticate(token: str, *, client_ip: str = "") -> ApiKey:
    now = timezone.now()
    parts = ApiKey.split(token)
    key_id, secret = parts if parts else ("", token)
    api_key = key_cache.get(key_id) if parts else None
    if api_key is None:
        # Same HMAC work as for a real key, so timing does not reveal unknown key ids.
        ApiKey.digest_secret(secret, settings.API_KEY_PEPPER_ID)
        raise AuthenticationError(_INVALID)
    if not api_key.secret_matches(secret, now):
        raise AuthenticationError(_INVALID)
    refusal = api_key.refusal(now)  # the rule every admission path shares (the admin's retry too)
    if refusal is not None:
        raise refusal
    if not api_key.allows_ip(client_ip):
        raise PermissionDenied(f"This API key may not be used from {client_ip}.", code="ip_not_allowed")
    _mark_used(api_key, now)
    return api_key


def _mark_used(api_key: ApiKey, now) -> None:
    """Record use at most once a minute, by whichever process gets there first."""
    if api_key.last_used_at is not None and api_key.last_used_at > now - LAST_USED_EVERY:
        return
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_EVERY), pk=api_key.pk
    ).update(last_used_at=now)
    api_key.last_used_at = now
