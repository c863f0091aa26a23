"""The stream writer: stores a task's chunks and announces each as it is stored."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import psycopg
from django.conf import settings
from django.utils import timezone

from tasks.events import CHANNEL, chunk_payload, conninfo
from tasks.models import StreamChunk
from tasks.retention import sealed_text


class ChunkConnections:
    """A few autocommit connections shared by every stream of a worker process.

    A chunk is one statement, so hundreds of streams take turns on `size` connections instead of holding
    one each: the process's connection count stays fixed whatever the load. A connection that broke (the
    database restarted) is dropped, and the next writer opens a fresh one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.opened = 0
        self.idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                conn = await psycopg.AsyncConnection.connect(**conninfo(), autocommit=True)
            except BaseException:
                self.opened -= 1
                raise
        else:
            conn = await self.idle.get()
        try:
            yield conn
        finally:
            if conn.closed or conn.broken:
                self.opened -= 1
                await conn.close()
            else:
                self.idle.put_nowait(conn)


# A chunk is stored and announced in one statement, so the notification goes out exactly when the chunk
# is readable; every PROGRESS_EVERY chunks the same statement advances the task's progress.
CHUNK = """
WITH stored AS (
    INSERT INTO tasks_streamchunk (task_id, seq, data, created_at)
    VALUES (%(task)s, %(seq)s, %(data)s, clock_timestamp())
    RETURNING 1
)
SELECT pg_notify(%(events)s, %(payload)s) FROM stored
"""
CHUNK_WITH_PROGRESS = """
WITH stored AS (
    INSERT INTO tasks_streamchunk (task_id, seq, data, created_at)
    VALUES (%(task)s, %(seq)s, %(data)s, clock_timestamp())
    RETURNING 1
),
progressed AS (
    UPDATE tasks_task SET progress = %(progress)s WHERE id = %(task)s AND progress < %(progress)s
    RETURNING 1
)
SELECT pg_notify(%(events)s, %(payload)s) FROM stored
"""


class ChunkWriter:
    """Stores a task's stream chunks and announces each, from the worker's event loop.

    Each chunk is one autocommit statement that inserts it and notifies, so the notification goes out
    exactly when the chunk is readable. With `connections`, statements run on the process's shared
    connections; without (one generation run inline), the writer opens its own."""

    PROGRESS_EVERY = 5  # chunks between progress updates

    def __init__(
        self,
        task_id: str,
        *,
        next_seq: int,
        expected_tokens: int,
        connections: ChunkConnections | None = None,
        sealed: bool = False,
    ) -> None:
        self.task_id = task_id
        self.sealed = sealed  # stored encrypted: its tenant stores no content (tasks/retention.py)
        self.next_seq = next_seq
        self.expected_tokens = max(1, expected_tokens)
        self.own = connections is None
        self.connections = connections or ChunkConnections(1)

    async def __aenter__(self) -> "ChunkWriter":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.own:
            while not self.connections.idle.empty():
                await self.connections.idle.get_nowait().close()

    async def write(self, data: str, *, delivered_tokens: int) -> None:
        seq = self.next_seq
        params = {
            "task": self.task_id,
            "seq": seq,
            "data": sealed_text(data) if self.sealed else data,
            "events": CHANNEL,
            "payload": chunk_payload(self.task_id, seq, data),
        }
        statement = CHUNK
        if seq % self.PROGRESS_EVERY == 0:
            statement = CHUNK_WITH_PROGRESS
            params["progress"] = min(99, 1 + (98 * delivered_tokens) // self.expected_tokens)
        async with self.connections.connection() as conn:
            await conn.execute(statement, params)
        self.next_seq += 1


def stream_chunks_expire() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_RETENTION_SECONDS)
    deleted, _ = StreamChunk.objects.filter(task__finished_at__lt=cutoff).delete()
    return deleted
