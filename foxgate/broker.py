"""django-q2's queue on PostgreSQL: jobs claimed in one statement, dispatched on NOTIFY, back soon after a
cluster dies.

`OutageTolerantORM` rides out a database outage. django-q2's pusher treats any error from `dequeue` as a
crashed broker: it logs, sleeps 10 s and exits for the sentinel to start a new one, so a cluster stalled
for ~10 s after every PostgreSQL restart. Here a poll that fails for want of the database drops the dead
connection and says "nothing yet"; the next poll, one short pause later, connects afresh.

`PostgresBroker` (the one Q_CLUSTER names) adds, on the same table (django_q_ormq):

- Claim: one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT bulk) RETURNING`. Two
  clusters never get the same row (the row lock is held until the update commits, and a row another
  cluster locked is skipped, not waited for), and a bulk of jobs costs one round trip, not one per row.
- Wake: a trigger (tasks/migrations, `queue_notify`) NOTIFYs on every insert, delivered when the
  enqueueing transaction commits. A claim that took less than a bulk took every job committed before it,
  so the next claim first waits on a LISTEN connection for a notification, with `poll` seconds as the
  safety net (a lock that lapsed), instead of sleeping `poll` or claiming again to find nothing.
  LISTEN is issued before the first claim, so a job committed between a claim and the wait wakes it;
  notifications already received when a claim starts are dropped, since that claim sees their jobs.
  After a (re)connected LISTEN or a failed claim, the next claim runs at once.
- Enqueue: the row's lock is the database's `now()`, not this process's clock, since claims compare it
  with the database's clock; and the insert runs on Django's connection, inside the caller's transaction
  when there is one (admission commits the task and its job together).
- Short, renewed locks. The ORM broker locks a claimed row for `retry` seconds (660 s), and the row stays
  until the job is acknowledged after it ran; so jobs a killed cluster had taken into its internal queue
  sat for 11 minutes. Here a claim locks for LOCK_SECONDS, and a thread of the pusher process renews the
  locks of the rows it took every RENEW_SECONDS until they are acknowledged (the renewal's RETURNING says
  which rows are gone), never past `retry` seconds after the claim (so a job a dead worker dropped comes
  back no later than it did before). When the whole cluster dies, renewal stops and its jobs are
  claimable again within LOCK_SECONDS.

  Why not acknowledge at claim and rely on the task row's lease? A job taken but not started leaves its
  task `pending`, with no lease yet; only the pending reclaim (RECLAIM_PENDING_SECONDS, 10 minutes) would
  requeue it, and jobs that are not relay tasks (schedules, admin jobs) have no lease at all. Renewing
  keeps the queue itself honest for every job. A job may still be delivered twice (the pusher restarted,
  a cluster drained for longer than LOCK_SECONDS after its pusher stopped): jobs are idempotent (task
  claim is a conditional update), so a second delivery does nothing.

- Acknowledged in batches. django-q2's monitor acknowledges each finished job with its own DELETE (in a
  transaction: DELETE, COMMIT). Here `acknowledge` records the row and a thread of the monitor's process
  deletes what was recorded in one statement, ACK_FLUSH_SECONDS after the first of them (sooner when
  ACK_FLUSH_ROWS wait), retrying through an outage, and once more as the process exits. The pusher
  renews a row until its renewal finds it deleted, so an acknowledged row is renewed at most once more.
  When the monitor dies with rows recorded (kill -9), those rows stay and their jobs are delivered again
  once their locks lapse: LOCK_SECONDS after the cluster died, or, if only the monitor died, when the
  pusher stops renewing them, `retry` seconds after their claim. A second delivery of a finished job
  does nothing, as above.
- No health check per statement. django-q2's ORM broker calls Django's `close_old_connections` before
  every claim and every acknowledgement, and with CONN_HEALTH_CHECKS each costs a `SELECT 1` round trip
  first (a third of the pusher's time, profiled). Here a connection is checked only after one of its
  statements failed; a dead one is dropped on the outage path (`OutageTolerantORM`), and a cluster's
  connections otherwise live as long as its processes (foxgate/management/commands/qcluster.py).
"""

import contextlib
import logging
import os
import threading
import time
from multiprocessing import util
from typing import Any

import psycopg
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.functions import Now
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ

from foxgate.database import direct_conninfo, prepared_cursor
from foxgate.errors import DATABASE_OUTAGE

logger = logging.getLogger(__name__)

# Between polls while the database is away: short, so work resumes soon after it returns, and not a
# busy loop of failed connection attempts.
OUTAGE_POLL_SECONDS = 0.2

CHANNEL = "foxgate_queue"  # the trigger in tasks/migrations NOTIFYs here, with the row's key as payload
LOCK_SECONDS = 15  # a dead cluster's jobs come back this long after its last renewal
RENEW_SECONDS = 5  # a third of the lock: one missed renewal (a slow database) does not release a job
# Acknowledged rows are deleted together this long after the first of them, or as soon as this many wait:
# one statement per tick instead of one transaction per job, for a delay no client can see.
ACK_FLUSH_SECONDS = 0.025
ACK_FLUSH_ROWS = 200

TABLE = OrmQ._meta.db_table
CLAIM = f"""
    UPDATE {TABLE} SET lock = now() + make_interval(secs => %(lock)s)
    WHERE id IN (
        SELECT id FROM {TABLE} WHERE key = %(key)s AND lock < now()
        ORDER BY id LIMIT %(bulk)s FOR UPDATE SKIP LOCKED
    )
    RETURNING id, payload
"""  # noqa: S608 - the table name is the model's
RENEW = f"""
    UPDATE {TABLE} SET lock = now() + make_interval(secs => %(lock)s)
    WHERE id = ANY(%(ids)s) RETURNING id
"""  # noqa: S608
DELETE_ACKNOWLEDGED = f"DELETE FROM {TABLE} WHERE id = ANY(%(ids)s)"  # noqa: S608


class OutageTolerantORM(ORM):
    database_away = False  # logged once when the database goes, once when it is back

    def dequeue(self) -> list[tuple[int, str]] | None:
        try:
            found = self.claim()
        except DATABASE_OUTAGE as error:
            if not self.database_away:
                logger.warning(
                    "the queue's database is unavailable (%s); polling on", str(error).strip()[:200]
                )
            self.database_away = True
            with contextlib.suppress(*DATABASE_OUTAGE):
                connections[Conf.ORM].close()
            time.sleep(OUTAGE_POLL_SECONDS)
            return None
        if self.database_away:
            logger.warning("the queue's database is back")
            self.database_away = False
        return found

    def claim(self) -> list[tuple[int, str]] | None:
        return super().dequeue()


class PostgresBroker(OutageTolerantORM):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key)
        self._local_state()

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)
        self._local_state()

    def _local_state(self) -> None:
        # Per process: a forked pusher must not share its parent's LISTEN socket or renewal thread.
        self._pid = os.getpid()
        self._listen: psycopg.Connection | None = None
        self._listen_failed = False
        self._more = True  # jobs may be waiting that no notification will announce: claim before waiting
        self._held: dict[int, float] = {}  # claimed row id -> monotonic time its renewals stop
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._acked: list[int] = []  # acknowledged, not yet deleted
        self._acks = threading.Condition()  # guards _acked; wakes the flusher
        self._flushing = threading.Lock()  # held while a flush is under way, so the exit flush waits for it
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()  # close() was called: the renewer and the flusher stop

    @staticmethod
    def get_connection(list_key: str | None = None) -> QuerySet[OrmQ]:
        _usable_connection()
        return OrmQ.objects.using(Conf.ORM)

    def enqueue(self, task: str) -> int:
        # list_key might be empty (e.g. in a test setup) but OrmQ.key is not null
        package = self.get_connection().create(
            key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=Now()
        )
        return package.pk

    def claim(self) -> list[tuple[int, str]] | None:
        if self._pid != os.getpid():
            self._local_state()
        listening = self._listening()  # before the claim: a job committed after it still wakes us
        if not self._more:
            self._wait(listening)
        self._more = True  # until a claim says otherwise: a failed one says nothing
        self._drain(listening)
        with prepared_cursor(_usable_connection()) as cursor:
            cursor.execute(CLAIM, {"lock": LOCK_SECONDS, "key": self.list_key, "bulk": Conf.BULK})
            rows = sorted(cursor.fetchall())
        # Fewer than a bulk: the claim took every job committed before it, so the next one waits for a
        # notification instead of claiming again to find nothing (a round trip per job, measured).
        self._more = len(rows) >= Conf.BULK
        if rows:
            self._hold([row[0] for row in rows])
            return rows
        return None

    def _listening(self) -> psycopg.Connection | None:
        if self._listen is None or self._listen.closed:
            try:
                self._listen = psycopg.connect(**direct_conninfo(), autocommit=True)
                self._listen.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as error:
                if not self._listen_failed:  # once, not at every poll while the database is away
                    logger.warning("the queue cannot LISTEN (%s); polling", str(error).strip()[:200])
                self._listen_failed = True
                self._drop_listen()
            else:
                self._listen_failed = False
                self._more = True  # jobs enqueued while we were not listening wake nobody
        return self._listen

    def _wait(self, listening: psycopg.Connection | None) -> None:
        """Until a job is enqueued after the last claim, or `poll` seconds (the safety net) pass."""
        if listening is None:
            time.sleep(min(Conf.POLL, OUTAGE_POLL_SECONDS))
            return
        try:
            for _ in listening.notifies(timeout=Conf.POLL, stop_after=1):
                pass
        except psycopg.Error:
            self._drop_listen()  # reconnected by the next claim, which also catches up on what we missed

    def _drain(self, listening: psycopg.Connection | None) -> None:
        """Forget the notifications already here: their jobs are committed, so the claim about to run
        takes them, and the notifications would only wake us again to find them gone."""
        if listening is None:
            return
        try:
            for _ in listening.notifies(timeout=0):
                pass
        except psycopg.Error:
            self._drop_listen()

    def close(self) -> None:
        """Delete what was acknowledged and let go of the LISTEN connection and the flusher (a cluster's
        processes just exit; tests and tools call this)."""
        self._drop_listen()
        if self._pid != os.getpid():
            return  # the threads, if any, are another process's
        with self._acks:
            self._closed.set()
            self._acks.notify()
        for thread in (self._flusher, self._renewer):
            if thread is not None:
                thread.join()
        self._flusher = self._renewer = None

    def _drop_listen(self) -> None:
        if self._listen is not None:
            with contextlib.suppress(psycopg.Error):
                self._listen.close()
        self._listen = None

    def _hold(self, ids: list[int]) -> None:
        renew_until = time.monotonic() + Conf.RETRY
        with self._held_lock:
            self._held.update(dict.fromkeys(ids, renew_until))
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(
                target=self._renew_forever, name="queue-lock-renewal", daemon=True
            )
            self._renewer.start()

    def _renew_forever(self) -> None:
        try:
            while not self._closed.wait(RENEW_SECONDS):
                try:
                    self.renew()
                except Exception as error:
                    # The database away: the locks may lapse and the jobs be delivered again, harmlessly.
                    _failed(error, "renewing the queue's locks")
        finally:
            connections[Conf.ORM].close()  # this thread's own connection

    def renew(self) -> None:
        """Extend the locks of the rows this process claimed and not yet saw acknowledged."""
        now = time.monotonic()
        with self._held_lock:
            for row_id in [row_id for row_id, until in self._held.items() if until <= now]:
                del self._held[row_id]  # past `retry`: its lock lapses, as the ORM broker's would
            ids = list(self._held)
        if not ids:
            return
        with prepared_cursor(_usable_connection()) as cursor:
            cursor.execute(RENEW, {"lock": LOCK_SECONDS, "ids": ids})
            present = {row[0] for row in cursor.fetchall()}
        with self._held_lock:
            for row_id in ids:
                if row_id not in present:  # acknowledged (deleted) since we claimed it
                    self._held.pop(row_id, None)

    def acknowledge(self, task_id: int) -> None:
        """Record a finished job's row; the flusher deletes it with the others of its tick."""
        if self._pid != os.getpid():
            self._local_state()
        with self._acks:
            self._acked.append(task_id)
            # Wake the flusher only when it waits for this: the first row (its idle wait) or a full batch
            # (its timed wait). A wake-up per row cost the monitor a thread switch per job, profiled; a
            # row recorded while a flush runs is seen by the flusher's next check of its condition.
            if len(self._acked) in (1, ACK_FLUSH_ROWS):
                self._acks.notify()
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_forever, name="queue-acknowledgements", daemon=True
            )
            self._flusher.start()
            # The monitor exits after its last result: what it acknowledged last is deleted first.
            util.Finalize(self, self.flush, exitpriority=10)

    def _flush_forever(self) -> None:
        try:
            while True:
                with self._acks:
                    self._acks.wait_for(lambda: self._acked or self._closed.is_set())  # idle: no wake-ups
                    self._acks.wait_for(
                        lambda: len(self._acked) >= ACK_FLUSH_ROWS or self._closed.is_set(),
                        ACK_FLUSH_SECONDS,
                    )
                    closing = self._closed.is_set()
                try:
                    self.flush()
                except Exception as error:
                    _failed(error, "deleting acknowledged jobs")  # they were put back for the next try
                    if not closing:
                        self._closed.wait(OUTAGE_POLL_SECONDS)  # then the next try, on a new connection
                        continue
                if closing:
                    return
        finally:
            connections[Conf.ORM].close()  # this thread's own connection

    def flush(self) -> None:
        """Delete every acknowledged row in one statement."""
        with self._flushing:
            with self._acks:
                ids, self._acked = self._acked, []
            if not ids:
                return
            try:
                with prepared_cursor(_usable_connection()) as cursor:
                    cursor.execute(DELETE_ACKNOWLEDGED, {"ids": ids})
            except BaseException:
                with self._acks:
                    self._acked[:0] = ids
                raise


def _usable_connection() -> BaseDatabaseWrapper:
    """This thread's queue connection, checked only if one of its statements failed since it last worked:
    Django's `close_old_connections` would reset the check for every statement, a round trip each."""
    connection = connections[Conf.ORM]
    if connection.errors_occurred and not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
    return connection


def _failed(error: Exception, doing: str) -> None:
    """After a statement of this thread failed: say so unless the database is merely away, and drop the
    connection, so the next try connects afresh."""
    if not isinstance(error, DATABASE_OUTAGE):
        logger.exception("%s failed; retrying", doing)
    with contextlib.suppress(*DATABASE_OUTAGE):
        connections[Conf.ORM].close()
