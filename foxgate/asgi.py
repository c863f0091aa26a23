import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpResponseBase
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")

# Idle request threads kept for reuse: a burst's worth; past a burst, the spares exit.
IDLE_THREADS = 64


class RequestThread:
    """One request's thread (a single-thread executor), and its Django database wrappers, so the event
    loop can tell whether the thread holds a connection."""

    def __init__(self) -> None:
        self.databases: list[BaseDatabaseWrapper] = []  # none until the thread starts
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="request", initializer=self._started)

    def _started(self) -> None:
        self.databases = [connections[alias] for alias in connections]  # this thread's own

    def holds_connection(self) -> bool:
        return any(database.connection is not None for database in self.databases)


class ReusedThreadsHandler(ASGIHandler):
    """Django's ASGI handler, each request's sync code run on a thread reused from an earlier request
    rather than on one started for it, and an API request's start and end without a thread hop.

    Django runs a request inside a ThreadSensitiveContext so that all its sync code (the ORM's above
    all) runs on one thread of its own. Left to itself, asgiref starts that thread for the request and
    a second one to join it when the request ends: two thread starts and a fresh set of database
    wrappers per request (bench/results/webcpu.md). Here the guarantee is the same, one thread per
    request and no thread serving two requests at once, from a stack of idle single-thread executors.
    A reused thread starts clean: Django's request_finished, at the end of the request before, closed
    its database connection (back to the pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.idle: list[RequestThread] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refuses it, as Django does
            return
        thread = self.idle.pop() if self.idle else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread.executor):
                if scope["path"].startswith(API_PREFIX) and not settings.DEBUG:
                    await self.handle_api(scope, receive, send, thread)
                else:
                    await self.handle(scope, receive, send)
        finally:
            if len(self.idle) < IDLE_THREADS:
                self.idle.append(thread)
            else:
                thread.executor.shutdown(wait=False)  # its thread exits once idle; nothing waits for it

    async def handle_api(self, scope: dict[str, Any], receive: Any, send: Any, thread: RequestThread) -> None:
        """Django's `handle`, without a thread hop at the start or the end of a request whose thread holds
        no database connection then.

        request_started's receivers (Django's reset_queries and close_old_connections) tidy the calling
        thread's connections: on a thread that holds none they have nothing to do, so they are skipped.
        request_finished's (close_old_connections again, close_caches, reset_urlconf) are sent on the
        event loop, where only the last two have work, and that work is no thread's own. A reused thread
        holds no connection at the start, and a view that gave its connection back in its last hop
        (admission, a poll's read, the sync answer's read) holds none at the end. A thread that does
        gets both signals in a hop of its own, so its connection goes back to the pool as in
        Django. Only for API paths, whose responses hold no files (a file's close may block), and not
        under DEBUG, where reset_queries must empty the request thread's query log."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        if thread.holds_connection():
            await sync_to_async(signals.request_started.send)(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await self.send_signal(thread, error_response.close)
            return

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left while it was sent
                await self.send_response(response, send)
            return response

        # As Django does: a disconnect while the response is made cancels it (a sync wait gives up).
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await self.send_signal(thread, signals.request_finished.send, sender=self.__class__)
        else:
            await self.send_signal(thread, response.close)
        body_file.close()

    @staticmethod
    async def send_signal(thread: RequestThread, send_it: Callable[..., Any], **kwargs: Any) -> None:
        """Run `send_it` (a signal's sync receivers, or a response's close, which sends one) in the
        request's thread if it holds a connection, else at once on the event loop."""
        if thread.holds_connection():
            await sync_to_async(send_it)(**kwargs)
        else:
            send_it(**kwargs)


def web_server_setup() -> None:
    """Set Django up as a web server: pooled connections (a web server handles many requests at once,
    each in a thread of its own) and sessions named `foxgate-web`, so pg_stat_activity tells them from
    the cluster's; FOXGATE_DB_POOL and PGAPPNAME, when set, still decide.

    The role goes into this process's settings, never into its environment: a process started from this
    one (a worker cluster, which forks and must not pool) would otherwise inherit it. A process whose
    Django is set up already (the test runner, importing this module) keeps the settings it has."""
    if settings.configured:
        django.setup(set_prefix=False)
        return
    pool_unset = "FOXGATE_DB_POOL" not in os.environ
    if pool_unset:
        os.environ["FOXGATE_DB_POOL"] = "1"  # only while the settings read it
    try:
        django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first
    finally:
        if pool_unset:
            del os.environ["FOXGATE_DB_POOL"]
    if "PGAPPNAME" not in os.environ:
        for database in settings.DATABASES.values():
            database["OPTIONS"].setdefault("application_name", "foxgate-web")


web_server_setup()
django_application = ReusedThreadsHandler()

from foxgate.middleware import API_PREFIX  # noqa: E402 - needs the settings configured above
from foxgate.parsers import BodyLimit  # noqa: E402

application = BodyLimit(django_application)
