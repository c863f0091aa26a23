"""Bearer API key authentication for the public API."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from foxgate.errors import AuthenticationError, PermissionDenied
from tenants.models import ApiKey, Tenant

_INVALID = "Invalid API key."


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer sk-...`. On success `request.user` is the ApiKey and `request.auth` its tenant.

    An unknown key id, a wrong secret for a real key id and a revoked key all get the same answer after
    the same work, so the response tells an attacker nothing about which key ids exist.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKey, object] | None:
        header = get_authorization_header(request).decode("latin-1").split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower() or len(header) != 2:
            raise AuthenticationError(
                "Malformed Authorization header: send 'Authorization: Bearer sk-...'.", code="invalid_api_key"
            )
        api_key = key_authenticate(header[1])
        return api_key, api_key.tenant

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key: sk-<key id><secret>"}


def key_authenticate(token: str) -> ApiKey:
    parts = ApiKey.split(token)
    key_id, secret = parts if parts else ("", token)
    api_key = ApiKey.objects.select_related("tenant").filter(key_id=key_id).first() if parts else None
    if api_key is None:
        # Same HMAC work as for a real key, so timing does not reveal unknown key ids.
        ApiKey.digest_secret(secret, settings.API_KEY_PEPPER_ID)
        raise AuthenticationError(_INVALID)
    if not api_key.secret_matches(secret) or api_key.revoked_at is not None:
        raise AuthenticationError(_INVALID)
    if api_key.is_expired():
        raise AuthenticationError("This API key has expired.", code="expired_api_key")
    if api_key.tenant.status != Tenant.Status.ACTIVE:
        raise PermissionDenied("This API key's tenant is suspended.", code="tenant_suspended")
    return api_key
