"""The stream writer: stores a task's chunks and announces each as it is stored."""

from datetime import timedelta

import psycopg
from django.conf import settings
from django.utils import timezone

from tasks.events import CHANNEL, chunk_payload, conninfo
from tasks.models import StreamChunk


class ChunkWriter:
    """Stores a task's stream chunks and announces each, from the worker's event loop.

    Its own async connection, in autocommit: each chunk is one statement that inserts it and notifies,
    so the notification goes out exactly when the chunk is readable."""

    PROGRESS_EVERY = 5  # chunks between progress updates

    def __init__(self, task_id: str, *, next_seq: int, expected_tokens: int) -> None:
        self.task_id = task_id
        self.next_seq = next_seq
        self.expected_tokens = max(1, expected_tokens)
        self.conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> "ChunkWriter":
        self.conn = await psycopg.AsyncConnection.connect(**conninfo(), autocommit=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def write(self, data: str, *, delivered_tokens: int) -> None:
        assert self.conn is not None
        seq = self.next_seq
        await self.conn.execute(
            "WITH stored AS (INSERT INTO tasks_streamchunk (task_id, seq, data, created_at) "
            "VALUES (%s, %s, %s, clock_timestamp()) RETURNING 1) SELECT pg_notify(%s, %s) FROM stored",
            [self.task_id, seq, data, CHANNEL, chunk_payload(self.task_id, seq, data)],
        )
        self.next_seq += 1
        if seq % self.PROGRESS_EVERY == 0:
            progress = min(99, 1 + (98 * delivered_tokens) // self.expected_tokens)
            await self.conn.execute(
                "UPDATE tasks_task SET progress = %s WHERE id = %s AND progress < %s",
                [progress, self.task_id, progress],
            )


def stream_chunks_expire() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_RETENTION_SECONDS)
    deleted, _ = StreamChunk.objects.filter(task__finished_at__lt=cutoff).delete()
    return deleted
