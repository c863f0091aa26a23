import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
# A web server handles many requests at once, each in its own thread: give it a connection pool.
os.environ.setdefault("FOXGATE_DB_POOL", "1")
# Name its database connections, so pg_stat_activity tells web connections from the cluster's.
os.environ.setdefault("PGAPPNAME", "foxgate-web")

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


django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does before its handler
django_application = ReusedThreadsHandler()

from foxgate.parsers import BodyLimit  # noqa: E402 - needs the settings configured above

application = BodyLimit(django_application)
