"""Request ids: echo the client's `X-Request-Id` or make one, and carry it through logs and errors."""

import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


def request_id_for(sent: str) -> str:
    """The client's `X-Request-Id` when it is a sane one, else a fresh id."""
    return sent if _CLIENT_ID.match(sent) else f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if iscoroutinefunction(self):
            return self._acall(request)
        token = _request_id.set(self._request_id(request))
        try:
            return self._tag(self.get_response(request))
        finally:
            _request_id.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        token = _request_id.set(self._request_id(request))
        try:
            return self._tag(await self.get_response(request))
        finally:
            _request_id.reset(token)

    @staticmethod
    def _request_id(request: HttpRequest) -> str:
        request_id = request_id_for(request.headers.get("X-Request-Id", ""))
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id

    @staticmethod
    def _tag(response: HttpResponseBase) -> HttpResponseBase:
        response["X-Request-Id"] = current_request_id()
        return response
