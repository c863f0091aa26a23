"""Entry points of the django-q2 worker cluster: take ids, call a service, return.

A job may be delivered more than once (a worker that timed out is retried), so each must be idempotent.
"""

from foxgate.logs import task_context
from tasks.relay.chunks import stream_chunks_expire
from tasks.relay.engine import task_execute
from tasks.relay.reclaim import tasks_reclaim
from tasks.rollups import usage_rollup


def task_run(task_id: str) -> None:
    with task_context(task_id, tenant=""):
        task_execute(task_id=task_id)


def stream_chunks_expire_job() -> int:
    """Delete the chunks of streams that ended more than STREAM_RETENTION_SECONDS ago."""
    return stream_chunks_expire()


def tasks_reclaim_job() -> dict[str, int]:
    """Requeue or fail tasks a dead process left pending or processing."""
    return tasks_reclaim()


def usage_rollup_job() -> int:
    """Fold newly finished tasks into the usage rollup the dashboards read."""
    return usage_rollup()


def channel_probe_job(channel_id: int) -> bool | None:
    """The admin's "test connection", run here so only the cluster calls a provider: whether the channel
    answered (None when it was deleted meanwhile)."""
    from tasks.relay.probe import channel_probe

    result = channel_probe(channel_id=channel_id)
    return None if result is None else result.ok
