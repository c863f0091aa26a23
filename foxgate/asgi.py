import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")

# Idle request threads kept for reuse: a burst's worth; past a burst, the spares exit.
IDLE_THREADS = 64


class ReusedThreadsHandler(ASGIHandler):
    """Django's ASGI handler, each request's sync code run on a thread reused from an earlier request
    rather than on one started for it.

    Django runs a request inside a ThreadSensitiveContext so that all its sync code (the ORM's above
    all) runs on one thread of its own. Left to itself, asgiref starts that thread for the request and
    a second one to join it when the request ends: two thread starts and a fresh set of database
    wrappers per request (bench/results/webcpu.md). Here the guarantee is the same, one thread per
    request and no thread serving two requests at once, from a stack of idle single-thread executors.
    A reused thread starts clean: Django's request_finished, at the end of the request before, closed
    its database connection (back to the pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refuses it, as Django does
            return
        executor = self.idle.pop() if self.idle else ThreadPoolExecutor(1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self.idle) < IDLE_THREADS:
                self.idle.append(executor)
            else:
                executor.shutdown(wait=False)  # its thread exits once idle; nothing waits for it


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

from foxgate.parsers import BodyLimit  # noqa: E402 - needs the settings configured above

application = BodyLimit(django_application)
