"""Server-sent events of a streamed task, for any number of clients joining at any point.

A client gets `chunk` events numbered from its offset, then `done` or `error`. Chunks come from the
process's listener when they were announced with their data, and from the database otherwise: on joining
(replay), when a gap shows a notification was missed or too big to carry the chunk, when the task
finishes, and after every keep-alive interval. So nothing is lost or repeated, whenever the client joins.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from foxgate.errors import ApiError, NotFound
from tasks.events import Subscription, listener, release_connection
from tasks.models import StreamChunk, Task
from tasks.retention import unsealed_text


class EventStreamRenderer(JSONRenderer):
    """Lets clients that accept only `text/event-stream` reach the views that stream.

    The events themselves go out as a StreamingHttpResponse, past any renderer; what this renders is the
    error envelope of a refusal, which foxgate.errors always labels application/json."""

    media_type = "text/event-stream"
    format = "sse"


class StreamExpired(ApiError):
    status_code = 410
    error_type = "not_found"
    code = "stream_expired"


def stream_check(task: Task) -> None:
    """Refuse a stream that does not exist or no longer does."""
    if not task.stream:
        raise NotFound(
            "This task was not submitted with stream: true; poll it instead.", code="stream_not_found"
        )
    retention = timedelta(seconds=settings.STREAM_RETENTION_SECONDS)
    if task.finished_at is not None and task.finished_at + retention < timezone.now():
        raise StreamExpired(
            f"This stream ended more than {settings.STREAM_RETENTION_SECONDS}s ago; its chunks are gone. "
            f"The result stays available from GET /v1/tasks/{task.id}."
        )


def sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


KEEP_ALIVE = ": keep-alive\n\n"  # an SSE comment: every client skips it, every proxy sees traffic


async def task_events(task_id: str, *, offset: int) -> AsyncIterator[str]:
    """The task's stream from chunk `offset` on, as FoxAPI's events: `chunk`s, then `done` or `error`."""
    chunks = TaskChunks(task_id, offset=offset)
    total = offset
    async for seq, data in chunks:
        if seq is None:
            yield data
        else:
            yield sse("chunk", data, seq)
            total = seq + 1
    yield _ending(chunks.finished, total)


class TaskChunks:
    """(seq, data) of each of a task's chunks from `offset` on, until the task has finished, with
    (None, KEEP_ALIVE) whenever it is silent for STREAM_KEEPALIVE_SECONDS; then `finished` is the task
    (its status and error)."""

    def __init__(self, task_id: str, *, offset: int) -> None:
        self.task_id = task_id
        self.offset = offset
        self.finished: Task

    def __aiter__(self) -> AsyncIterator[tuple[int | None, str]]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[tuple[int | None, str]]:
        task_id, next_seq = self.task_id, self.offset
        async with listener().subscribe(task_id) as heard:
            while True:
                heard.wake.clear()
                must_read = heard.changed or (heard.heard_of >= next_seq and next_seq not in heard.chunks)
                heard.changed = False
                while next_seq in heard.chunks:  # announced with its data: straight from memory
                    yield next_seq, heard.chunks.pop(next_seq)
                    next_seq += 1
                if must_read or next_seq == self.offset:
                    async for seq, data in _stored_chunks(task_id, next_seq):
                        yield seq, data
                        next_seq = seq + 1
                    _forget_before(heard, next_seq)
                    task = await Task.objects.only("status", "error_code", "error_message").aget(pk=task_id)
                    await release_connection()
                    if task.is_finished:
                        # every chunk was stored before the task finished, so the read above got them all
                        async for seq, data in _stored_chunks(task_id, next_seq):
                            yield seq, data
                            next_seq = seq + 1
                        self.finished = task
                        return
                try:
                    await asyncio.wait_for(heard.wake.wait(), settings.STREAM_KEEPALIVE_SECONDS)
                except TimeoutError:
                    heard.changed = True  # re-read at the next turn, in case a notification went missing
                    yield None, KEEP_ALIVE


async def _stored_chunks(task_id: str, since: int) -> AsyncIterator[tuple[int, str]]:
    rows = (
        StreamChunk.objects.filter(task_id=task_id, seq__gte=since).order_by("seq").values_list("seq", "data")
    )
    async for seq, data in rows:
        yield seq, unsealed_text(data)


def _forget_before(heard: Subscription, seq: int) -> None:
    for old in [s for s in heard.chunks if s < seq]:
        del heard.chunks[old]


def _ending(task: Task, total: int) -> str:
    if task.status == Task.Status.COMPLETED:
        return sse("done", json.dumps({"total_chunks": total}))
    return sse("error", json.dumps({"message": task.error_message, "code": task.error_code}))
