"""A worker killed while idle must not freeze its cluster.

django-q2's workers wait for their next job in `multiprocessing.Queue.get()`, which holds the queue's read
lock for the whole wait. Our jobs return in milliseconds, so a worker is nearly always waiting there; one
killed by kill -9 or the OOM killer leaves the lock held forever, and its reincarnation and every sibling
then wait on it: measured, a cluster whose worker was killed never took another job. Here a worker waits
for data without the lock and takes the lock only to read one message, so a death leaves it free."""

import queue
import time
from typing import Any

from django_q import queues

_locked_get = queues.Queue.get


def _get(self: queues.Queue, block: bool = True, timeout: float | None = None) -> Any:
    if not block or timeout is not None:
        return _locked_get(self, block, timeout)
    while True:
        if self._reader.poll(0.2):  # readable: some reader may take it; try without waiting
            try:
                return _locked_get(self, False)
            except queue.Empty:
                time.sleep(0.001)  # a sibling took it, or holds the lock for its read


def worker_queue_patch() -> None:
    queues.Queue.get = _get
