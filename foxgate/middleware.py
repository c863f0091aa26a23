"""Request ids: echo the client's `X-Request-Id` or make one, and carry it through logs and errors."""

import itertools
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, security
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from whitenoise.responders import StaticFile

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIds:
    """Fresh request ids, `req_` and 32 hex digits like a uuid4's: a random half drawn once per process
    (again in a forked child) and a counter. Unique across processes as a uuid4 is, without asking the
    operating system for random bytes on every request."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self.prefix = f"req_{secrets.token_hex(8)}"
        self.counter = itertools.count()

    def issue(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_fresh_ids = RequestIds()


def request_id_for(sent: str) -> str:
    """The client's `X-Request-Id` when it is a sane one, else a fresh id."""
    return sent if sent and _CLIENT_ID.match(sent) else _fresh_ids.issue()


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
        # META, not request.headers: that builds a dict of every header for one lookup
        request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id

    @staticmethod
    def _tag(response: HttpResponseBase) -> HttpResponseBase:
        response["X-Request-Id"] = current_request_id()
        return response


# Under ASGI every hook of a MiddlewareMixin middleware runs through sync_to_async: a thread hop per
# hook per request, ten or more on each API call before these wrappers. Middleware whose hooks only
# look at headers and never block (no database, no files) runs them inline on the event loop instead;
# the admin's own (sessions, CSRF, users, messages) is skipped under /v1/ (foxgate/admin_middleware.py).

API_PREFIX = "/v1/"


class InlineHooks:
    """A MiddlewareMixin whose process_request and process_response never block: in async mode, call
    them on the event loop rather than in a thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class StaticFiles:
    """WhiteNoise, which is sync-only: left in an async chain it would run every request, API calls
    included, in a thread. Here only paths under its prefix reach it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.whitenoise = import_string("whitenoise.middleware.WhiteNoiseMiddleware")(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if iscoroutinefunction(self):
            return self._acall(request)
        return self.whitenoise(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.whitenoise.static_prefix):
            found = await sync_to_async(self._find)(request.path_info)  # may stat files (autorefresh)
            if found is not None:
                return await sync_to_async(self.whitenoise.serve)(found, request)
        return await self.get_response(request)

    def _find(self, path: str) -> "StaticFile | None":
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(path)
        return self.whitenoise.files.get(path)
