"""Entry points of the django-q2 worker cluster: take ids, call a service, return.

A job may be delivered more than once (a worker that timed out is retried), so each must be idempotent.
"""

from foxgate.logs import task_context
from tasks.callbacks import callback_send, callbacks_resume
from tasks.relay import engine
from tasks.relay.chunks import stream_chunks_expire
from tasks.relay.reclaim import task_requeue, tasks_reclaim
from tasks.retention import content_prune
from tasks.rollups import usage_rollup
from tasks.services import idempotency_keys_prune


def task_run(task_id: str) -> None:
    """In a cluster worker, admit the task to the process's relay loop (blocking while it is full) and
    return; anywhere else (tests, the sync cluster mode) run it to the end here."""
    if engine.engine_running():
        if not engine.engine_start().admit(task_id):
            task_requeue(task_id=task_id)  # this worker is draining: the task goes to another
        return
    with task_context(task_id, tenant=""):
        engine.task_execute(task_id=task_id)


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


def idempotency_keys_prune_job() -> int:
    """Forget the Idempotency-Keys older than their window (their tasks stay)."""
    return idempotency_keys_prune()


def callback_send_job(task_id: str) -> None:
    """POST a settled task to its callback_url."""
    callback_send(task_id)


def callbacks_resume_job() -> int:
    """Send the callbacks a dead process left unsent or unfinished."""
    return callbacks_resume()


def content_prune_job() -> int:
    """Erase the request and answer of tasks past their retention (tasks/retention.py)."""
    return content_prune()


def relay_engine_start() -> None:
    """Start this worker process's relay engine (tasks/apps.py calls it as the worker spawns)."""
    engine.engine_start()
