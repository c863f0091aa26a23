"""Log lines that carry their context: the request id, and the task and tenant being worked on.

`FOXGATE_LOG_FORMAT=json` (the default in production) writes one JSON object per line for log
collectors; `text` is the readable form for a terminal."""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from foxgate.middleware import current_request_id

_task_id: ContextVar[str] = ContextVar("task_id", default="")
_tenant: ContextVar[str] = ContextVar("tenant", default="")


@contextmanager
def task_context(task_id: str, tenant: str) -> Iterator[None]:
    """Every line logged inside names this task and its tenant."""
    task_token, tenant_token = _task_id.set(task_id), _tenant.set(tenant)
    try:
        yield
    finally:
        _task_id.reset(task_token)
        _tenant.reset(tenant_token)


def set_tenant(tenant: str) -> None:
    """Name the tenant for the rest of this request's lines (once its key is known)."""
    _tenant.set(tenant)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        record.task_id = _task_id.get()
        record.tenant = _tenant.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "task_id", "tenant"):
            value = getattr(record, field, "")
            if value and value != "-":
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
