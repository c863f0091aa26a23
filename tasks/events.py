"""Task events over PostgreSQL LISTEN/NOTIFY: task state changes and stream chunks.

Publishers (the worker cluster) notify inside the transaction that makes the change, so an event is
delivered exactly when the change is visible. Payloads, first word the task id:
- `<task id> <seq> <chunk JSON>`: a stored stream chunk, carried when it fits PostgreSQL's 8000-byte payload
  limit (else `<task id> <seq>`), so waiting clients get it from memory;
- `<task id> end <outcome JSON>`: a sync request's task finished; the JSON holds its status, result,
  error_code and error_message as stored (the result as jsonb prints it), so its waiter answers without
  a read;
- `<task id>`: the task finished (any other task, or one whose outcome was too large to carry).

Each web process holds one LISTEN connection (per event loop) and fans notifications out in memory to its
subscriptions: sync requests and SSE clients. No waiter relies on a notification alone: each re-reads the
database after subscribing (unless it subscribed before the task existed, with the listener listening:
then nothing about the task can have gone unheard), whenever it sees a gap or the listener reconnects, and
at a slow safety interval, so a notification lost to a dropped connection delays it but never hangs it or
loses a chunk. The same connection hears catalog changes, for the process's catalog (tasks/catalog.py).
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.db import connection

from foxgate.database import direct_conninfo
from tasks.catalog import CHANNEL as CATALOG
from tasks.catalog import catalog

logger = logging.getLogger(__name__)

CHANNEL = "foxgate_tasks"
RECONNECT_SECONDS = 0.25  # short: after a database restart, events resume at once
CONNECT_WAIT_SECONDS = 2.0
PAYLOAD_LIMIT = 7900  # bytes; PostgreSQL refuses notification payloads of 8000 or more
FINISHED = "end"  # the second word of a finished task's notification


def chunk_payload(task_id: str, seq: int, data: str) -> str:
    """The notification for a stored chunk: with the chunk itself when it fits."""
    payload = f"{task_id} {seq} {data}"
    return payload if len(payload.encode()) <= PAYLOAD_LIMIT else f"{task_id} {seq}"


def conninfo() -> dict[str, Any]:
    """libpq parameters of Django's database, for connections Django does not manage."""
    return direct_conninfo()


async def release_connection() -> None:
    """Give this request's database connection back to the pool while it waits for events.

    A web request holds its connection until it ends; a stream or a sync wait can last minutes, and
    holding one per waiting client would exhaust the pool at a few dozen clients (measured: bench/stream.py
    delays jumped from 2 ms to 600 ms past the pool size). The ORM runs this request's queries in one
    thread, and closing there returns the connection; the next query takes one again."""
    await sync_to_async(connection_release)()


def connection_release() -> None:
    """The sync half of release_connection, for a thread hop that ends with it. `connection` is resolved
    in the ORM's thread, so it is that thread's own; one inside a transaction (a test's) stays with it."""
    if not connection.in_atomic_block:
        connection.close()


class Subscription:
    """What one waiter has heard about one task since it last looked."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.chunks: dict[int, str] = {}  # seq → chunk JSON, from notifications
        self.heard_of: int = -1  # the highest chunk seq announced, carried or not
        self.changed = False  # the task's state changed (it finished), or the listener reconnected
        self.outcome: str | None = None  # the finished task's outcome JSON, when its notification carried it

    def hear(self, payload: str) -> None:
        parts = payload.split(" ", 2)
        if len(parts) == 1:
            self.changed = True
        elif parts[1] == FINISHED:
            self.changed = True
            self.outcome = parts[2]
        else:
            seq = int(parts[1])
            self.heard_of = max(self.heard_of, seq)
            if len(parts) == 3:
                self.chunks[seq] = parts[2]
        self.wake.set()

    def missed_something(self) -> None:
        self.changed = True
        self.wake.set()


class Listener:
    """One LISTEN connection and the subscriptions it feeds, bound to one event loop."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self.listening = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.runner = self.loop.create_task(self._run(), name="foxgate-task-listener")

    def hears(self) -> bool:
        """Connected, and its loop running to take what arrives (tasks/catalog.py asks, from any thread)."""
        return self.listening.is_set() and self.loop.is_running()

    async def _run(self) -> None:
        await listen_forever(
            (CHANNEL, CATALOG),
            name="task event listener",
            heard=self._heard,
            connected=self._connected,
            disconnected=self._disconnected,
        )

    def _heard(self, notify: psycopg.Notify) -> None:
        if notify.channel == CATALOG:
            catalog.changed()
            return
        task_id = notify.payload.split(" ", 1)[0]
        for subscription in self.subscriptions.get(task_id, ()):
            subscription.hear(notify.payload)

    def _connected(self) -> None:
        catalog.listener_started(self)
        self.listening.set()
        self._everyone_missed_something()  # what happened while we were not listening

    def _disconnected(self) -> None:
        catalog.listener_stopped(self)
        self.listening.clear()
        self._everyone_missed_something()

    def _everyone_missed_something(self) -> None:
        for subscriptions in self.subscriptions.values():
            for subscription in subscriptions:
                subscription.missed_something()

    @asynccontextmanager
    async def subscribe(self, task_id: str, *, wait: bool = True) -> AsyncIterator[Subscription]:
        """Hear the task's events from now on. A subscription taken while the listener is not listening
        starts as `changed` (what it has not heard yet must be read). With `wait`, first give a listener
        that is still connecting a moment: a stream is better served by it than by re-reads. A waiter
        that subscribes before the task exists (a sync request, before its admission commits) passes
        wait=False: it can miss nothing, and the listener's connecting wakes it anyway."""
        subscription = Subscription()
        self.subscriptions[task_id].add(subscription)
        try:
            # Listen before the caller's first read, so nothing between that read and now is missed.
            # If the database is unreachable the caller still re-reads at its safety interval.
            if wait and not self.listening.is_set():
                try:
                    await asyncio.wait_for(self.listening.wait(), CONNECT_WAIT_SECONDS)
                except TimeoutError:
                    logger.warning("task event listener not connected; waiting on re-reads only")
            if not self.listening.is_set():
                subscription.missed_something()
            yield subscription
        finally:
            self.subscriptions[task_id].discard(subscription)
            if not self.subscriptions[task_id]:
                del self.subscriptions[task_id]


async def listen_forever(
    channels: tuple[str, ...],
    *,
    name: str,
    heard: Callable[[psycopg.Notify], None],
    connected: Callable[[], None] = lambda: None,
    disconnected: Callable[[], None] = lambda: None,
) -> None:
    """LISTEN on `channels` on a connection of its own and pass each notification to `heard`, for as long
    as the calling task runs: after the database went away, again every RECONNECT_SECONDS (the outage
    logged once). `connected` and `disconnected` bracket each connection that listened."""
    logged = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(**conninfo(), autocommit=True) as conn:
                logged = False
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                connected()
                try:
                    async for notify in conn.notifies():
                        heard(notify)
                finally:
                    disconnected()
        except psycopg.OperationalError as error:
            if not logged:
                logger.warning("%s lost the database (%s); reconnecting", name, error)
            logged = True
        except Exception:
            logger.exception("%s failed; reconnecting", name)
        await asyncio.sleep(RECONNECT_SECONDS)


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
