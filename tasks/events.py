"""Task events over PostgreSQL LISTEN/NOTIFY.

The worker publishes with `task_notify` inside the transaction that changes the task, so the event is
delivered exactly when the change is visible. Each web process holds one LISTEN connection (per event
loop) and fans notifications out in memory to every waiting request. A waiter never relies on a
notification alone: it re-reads the database after subscribing, whenever it is woken, and at a slow
safety interval, so a notification lost to a dropped connection delays it but never hangs it.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)

CHANNEL = "foxgate_tasks"
RECONNECT_SECONDS = 1.0
CONNECT_WAIT_SECONDS = 2.0


def task_notify(task_id: str) -> None:
    """Tell every web process that the task changed; delivered when the current transaction commits."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, task_id])


def _conninfo() -> dict[str, Any]:
    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"],
        "host": db["HOST"],
        "port": db["PORT"],
    }
    return {k: v for k, v in params.items() if v} | {
        k: v for k, v in db["OPTIONS"].items() if k not in ("pool", "server_side_binding")
    }


class Listener:
    """One LISTEN connection and the waiters it wakes, bound to one event loop."""

    def __init__(self) -> None:
        self.waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.listening = asyncio.Event()
        self.runner = asyncio.get_running_loop().create_task(self._run(), name="foxgate-task-listener")

    async def _run(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**_conninfo(), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._wake_all()  # whatever happened while we were not listening: re-read
                    async for notify in conn.notifies():
                        self._wake(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("task event listener lost its connection; reconnecting")
            self.listening.clear()
            self._wake_all()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _wake(self, task_id: str) -> None:
        for event in self.waiters.get(task_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self.waiters.values():
            for event in events:
                event.set()

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self.waiters[task_id].add(event)
        try:
            # Listen before the caller's first read, so nothing between that read and now is missed.
            # If the database is unreachable the caller still re-reads at its safety interval.
            try:
                await asyncio.wait_for(self.listening.wait(), CONNECT_WAIT_SECONDS)
            except TimeoutError:
                logger.warning("task event listener not connected; waiting on re-reads only")
            yield event
        finally:
            self.waiters[task_id].discard(event)
            if not self.waiters[task_id]:
                del self.waiters[task_id]


_listeners: dict[asyncio.AbstractEventLoop, Listener] = {}


def listener() -> Listener:
    """This process's listener for the running event loop (a server has one loop; tests may have many)."""
    loop = asyncio.get_running_loop()
    found = _listeners.get(loop)
    if found is None:
        for old_loop in [old for old in _listeners if old.is_closed()]:
            del _listeners[old_loop]
        found = _listeners[loop] = Listener()
    return found
