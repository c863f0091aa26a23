"""The admin's middleware (sessions, CSRF, users, messages), skipped under /v1/.

API views authenticate by API key, are CSRF-exempt and never touch a session or a message, yet under
ASGI each of these hooks costs a thread hop (the session's save may query, so they cannot run inline).
Subclasses of Django's own, so the admin's system checks still find them. Apart from foxgate/middleware.py
because importing Django's auth middleware needs the app registry, and foxgate.errors imports that one."""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import csrf

from foxgate.middleware import API_PREFIX


class AdminOnly:
    """Mixed in before a MiddlewareMixin middleware: API requests go straight past it."""

    get_response: Callable

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(AdminOnly, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(AdminOnly, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(AdminOnly, messages.MessageMiddleware):
    pass


class CsrfViewMiddleware(AdminOnly, csrf.CsrfViewMiddleware):
    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            # Django calls a sync process_view through a thread in async mode; this one is a coroutine,
            # so an API request pays nothing. The check itself reads only headers, cookies and the form.
            self.process_view = self._aprocess_view  # type: ignore[method-assign]

    def process_view(
        self, request: HttpRequest, view: Callable, args: tuple, kwargs: dict
    ) -> HttpResponseBase | None:
        if request.path_info.startswith(API_PREFIX):
            return None
        return super().process_view(request, view, args, kwargs)

    async def _aprocess_view(
        self, request: HttpRequest, view: Callable, args: tuple, kwargs: dict
    ) -> HttpResponseBase | None:
        return CsrfViewMiddleware.process_view(self, request, view, args, kwargs)
