"""The one error envelope of the public API, produced here and nowhere else.

Views and services raise `ApiError` (or let Django REST framework raise its own exceptions); the
exception handler below turns either into
`{"error": {"message", "type", "code", "param"}}` with the status of API.md's error table.
"""

import json
import logging
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin
from rest_framework import exceptions, status
from rest_framework.response import Response

from foxgate.middleware import InlineHooks, current_request_id

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    error_type = "invalid_request_error"
    code = "invalid_request"
    headers: dict[str, str] = {}  # never mutated; RateLimited sets its own

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "code": self.code,
                "param": self.param,
            }
        }


class InvalidRequest(ApiError):
    code = "invalid_json"


class RequestTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than the limit of {limit} bytes.")


class AuthenticationError(ApiError):
    status_code = status.HTTP_401_UNAUTHORIZED
    error_type = "authentication_error"
    code = "invalid_api_key"


class InsufficientQuota(ApiError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    error_type = "insufficient_quota"
    code = "insufficient_balance"


class PermissionDenied(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    error_type = "permission_error"
    code = "permission_denied"


class NotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    error_type = "not_found"
    code = "not_found"


class MethodNotAllowed(ApiError):
    status_code = status.HTTP_405_METHOD_NOT_ALLOWED
    code = "method_not_allowed"


class TaskAlreadyFinished(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "task_already_finished"


class InvalidParam(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "invalid_param"


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    error_type = "service_unavailable_error"
    code = "no_available_channel"


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL is down, restarting or out of connections: a moment's wait and a retry will do."""

    code = "service_unavailable"
    headers = {"Retry-After": "2"}

    def __init__(self) -> None:
        super().__init__("The service is briefly unavailable; retry after a moment.")


# What a database outage raises: a refused or broken connection, or no pooled connection in time
# (psycopg_pool.PoolTimeout is a psycopg.OperationalError). Django wraps psycopg's errors in its own.
DATABASE_OUTAGE = (
    DjangoOperationalError,
    DjangoInterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class TaskFailed(ApiError):
    """A sync request whose task failed: the task's own error, with the status its cause deserves."""

    error_type = "upstream_error"
    STATUS_BY_CODE = {
        "upstream_timeout": status.HTTP_504_GATEWAY_TIMEOUT,
        "all_platforms_exhausted": status.HTTP_503_SERVICE_UNAVAILABLE,
        "no_available_channel": status.HTTP_503_SERVICE_UNAVAILABLE,
        "internal_error": status.HTTP_500_INTERNAL_SERVER_ERROR,
        "cancelled": status.HTTP_409_CONFLICT,  # a sync request whose task was cancelled meanwhile
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status_code = self.STATUS_BY_CODE.get(code, status.HTTP_502_BAD_GATEWAY)
        if self.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
            self.error_type = "service_unavailable_error"
        elif self.status_code == status.HTTP_500_INTERNAL_SERVER_ERROR:
            self.error_type = "server_error"
        elif self.status_code == status.HTTP_409_CONFLICT:
            self.error_type = "invalid_request_error"


class StillRunning(ApiError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    error_type = "timeout_error"
    code = "task_still_running"


class InternalError(ApiError):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    error_type = "server_error"
    code = "internal_error"

    def __init__(self) -> None:
        super().__init__(f"The server failed to handle this request (request id {current_request_id()}).")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler hook: every exception raised under /v1/ ends here."""
    error = as_api_error(exc)
    # Always JSON, whatever the client accepts: an event-stream client's refusal is still an envelope.
    response = Response(
        error.envelope(), status=error.status_code, headers=error.headers, content_type="application/json"
    )
    if error.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, exceptions.APIException):
        # Imported here: rest_framework.views loads the authentication classes, which import this module.
        from rest_framework.views import exception_handler

        # Keep what DRF computed, such as WWW-Authenticate on 401 and Allow on 405.
        default = exception_handler(exc, context)
        if default is not None:
            for header, value in default.items():
                response[header] = value
    return response


def as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DATABASE_OUTAGE):
        logger.warning("database unavailable: %s", str(exc).strip()[:200])
        return DatabaseUnavailable()
    if isinstance(exc, RequestDataTooBig):  # Django's own cap, checked when DRF reads the body
        return RequestTooLarge(settings.MAX_REQUEST_BYTES)
    if isinstance(exc, exceptions.NotAuthenticated):
        return AuthenticationError(
            "Missing API key: send it as 'Authorization: Bearer sk-...'.", code="missing_api_key"
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        return AuthenticationError(str(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return InvalidRequest(f"The request body is not valid JSON: {exc.detail}")
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return InvalidRequest(
            f"Unsupported content type {exc.detail}; send application/json.", code="unsupported_content_type"
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, Http404 | exceptions.NotFound):
        return NotFound("No such resource.")
    if isinstance(exc, exceptions.ValidationError):
        return _validation_error(exc.detail)
    if isinstance(exc, exceptions.APIException):
        error = ApiError(str(exc.detail), code=str(exc.default_code))
        error.status_code = exc.status_code
        return error
    logger.exception("unhandled error in API view", exc_info=exc)
    return InternalError()


def _validation_error(detail: Any, prefix: str = "") -> InvalidParam:
    """The first failing field of a serializer's errors, named with its path (`image_urls[2]`)."""
    if isinstance(detail, dict):
        field, inner = next(iter(detail.items()))
        if field == "non_field_errors":
            path = prefix
        elif isinstance(field, int):  # a list field reports its failing items by index
            path = f"{prefix}[{field}]"
        else:
            path = f"{prefix}.{field}" if prefix else str(field)
        return _validation_error(inner, path)
    if isinstance(detail, list):
        for index, inner in enumerate(detail):
            if inner:
                nested = isinstance(inner, dict | list)
                return _validation_error(inner, f"{prefix}[{index}]" if nested else prefix)
    message = str(detail)
    code = getattr(detail, "code", None)
    error = InvalidParam(f"{prefix}: {message}" if prefix else message, param=prefix or None)
    if code in {"model_not_found", "model_rule_violation", "invalid_image_url"}:
        error.code = code
    return error


def error_response(error: ApiError) -> HttpResponse:
    """The envelope as a plain Django response, for answers made outside a DRF view."""
    response = HttpResponse(
        json.dumps(error.envelope()), status=error.status_code, content_type="application/json"
    )
    for header, value in error.headers.items():
        response[header] = value
    return response


class ErrorEnvelopeMiddleware(InlineHooks, MiddlewareMixin):
    """The envelope for failures that happen outside a DRF view.

    A database outage in any view (the admin, /metrics) is 503 with Retry-After, never 500. And under
    /v1/ no HTML page reaches a client: Django answers some failures itself before the API's views
    run (a Host not in ALLOWED_HOSTS, an exception in a middleware), and with DEBUG on that answer is
    its debug page, which shows settings and source to whoever sent the request."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_OUTAGE):
            return error_response(as_api_error(exception))
        return None

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            not request.path.startswith("/v1/")
            or response.status_code < 400
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        replaced = error_response(_error_for_status(response.status_code))
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replaced[header] = response[header]
        return replaced


def _error_for_status(code: int) -> ApiError:
    if code == status.HTTP_404_NOT_FOUND:
        return NotFound("No such resource.")
    if code == status.HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        return RequestTooLarge(settings.MAX_REQUEST_BYTES)
    error = (
        InternalError()
        if code >= status.HTTP_500_INTERNAL_SERVER_ERROR
        else ApiError("The request could not be understood.", code="bad_request")
    )
    error.status_code = code
    return error
