"""What admission reads of the catalog on every submit (a model's current price for a group, whether an
enabled channel with a closed breaker serves it, whether a tenant has model rule overrides), kept in
memory by each web process so that a submit runs no statement for it.

Invariant: nothing is kept that a committed change has made wrong, once this process has heard the change.
Every write to those tables NOTIFYs CHANNEL in its own transaction (a trigger, tasks/migrations
0014_catalog_notify), PostgreSQL delivers it at commit, and the process's event listener (tasks/events.py)
forgets everything when it hears one. Entries are kept and used only while a listener hears (connected,
its event loop running): when none does (before the first one connects, while the database is away, in a
management command or a worker), a notification could go unheard, so every submit reads the database, as
it does for an entry not kept yet. A submit inside a transaction neither uses nor fills it
(tasks/services.py price_current): the transaction may have written the catalog itself.
A read that raced a change is not kept: each read is stamped with the generation it started in, and a
change moves the generation on. An entry is also read again after MAX_AGE_SECONDS.
"""

import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tasks.models import Price


class Hearing(Protocol):
    def hears(self) -> bool:
        """True while it is connected and its event loop runs, so that it hears every change."""


CHANNEL = "foxgate_catalog"
TENANTS_KEPT = 10_000  # tenants whose override flag is kept; past that, the flags start over
# A safety net, as for task events: a connection that died without telling us yet loses notifications.
MAX_AGE_SECONDS = 30.0


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the listener changes it on its loop, submits read it in threads
        self._generation = 0
        self._listeners: tuple[Hearing, ...] = ()  # this process's listeners (one per event loop)
        # (name, group): (price, channel_closed, when read); tenant id: (has overrides, when read)
        self._prices: dict[tuple[str, str], tuple[Price, bool, float]] = {}
        self._overrides: dict[int, tuple[bool, float]] = {}

    def generation(self) -> tuple[int, float]:
        """What a read about to start is stamped with, for `keep`."""
        return self._generation, time.monotonic()

    def _heard(self) -> bool:
        """Some listener hears every change now: what is kept can be trusted, and more can be kept."""
        return any(listener.hears() for listener in self._listeners)

    def price(self, name: str, group: str) -> "tuple[Price, bool] | None":
        """The model's price for the group and whether a closed channel serves it, if kept."""
        kept = self._prices.get((name, group))
        if kept is None or kept[2] < time.monotonic() - MAX_AGE_SECONDS or not self._heard():
            return None
        return kept[0], kept[1]

    def has_overrides(self, tenant_id: int) -> bool | None:
        kept = self._overrides.get(tenant_id)
        if kept is None or kept[1] < time.monotonic() - MAX_AGE_SECONDS or not self._heard():
            return None
        return kept[0]

    def keep(
        self,
        stamp: tuple[int, float],
        *,
        name: str,
        group: str,
        price: "Price",
        channel_closed: bool,
        tenant_id: int,
        has_overrides: bool,
    ) -> None:
        """Keep what a read stamped with `stamp` found, unless the catalog changed since it started or no
        listener would hear the next change."""
        generation, started = stamp
        with self._lock:
            if generation != self._generation or not self._heard():
                return
            if len(self._overrides) >= TENANTS_KEPT:
                self._overrides.clear()
            self._prices[name, group] = (price, channel_closed, started)
            self._overrides[tenant_id] = (has_overrides, started)

    def changed(self) -> None:
        """A change was heard, or may have gone unheard: forget everything."""
        with self._lock:
            self._generation += 1
            self._prices.clear()
            self._overrides.clear()

    def listener_started(self, listener: Hearing) -> None:
        """`listener` listens from now on; what changed before it did was not heard."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
        self.changed()

    def listener_stopped(self, listener: Hearing) -> None:
        with self._lock:
            self._listeners = tuple(other for other in self._listeners if other is not listener)
        self.changed()


catalog = Catalog()
