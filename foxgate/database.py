"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL under the local data folder.

The embedded server comes from the pip-installed `pgserver` package, so a fresh machine needs no
system service. Every process that loads the settings (web workers, the worker cluster, management
commands, the test runner) attaches to the same server; pgserver serialises starts with an
inter-process lock and stops the server when the last attached process exits.
"""

import json
import os
import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import CursorDebugWrapper, ServerBindingCursor
from django.db.backends.utils import CursorWrapper
from django.db.models.expressions import DatabaseDefault
from django.utils.asyncio import async_unsafe
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

EMBEDDED_DATABASE_NAME = "foxgate"
# Seconds to wait for a server that does not answer (libpq's minimum is 2): an unreachable database is
# a quick 503, not a request hanging on the operating system's TCP timeout.
CONNECT_TIMEOUT = 2
# psycopg prepares a statement only on a server-binding cursor. Django's cursors bind client-side, so
# this enables nothing by itself: prepared_cursor() asks for each of its statements explicitly, and a
# threshold no statement reaches keeps psycopg from preparing anything else on its own.
PREPARE_THRESHOLD = 2**31


def database_settings(
    database_url: str, data_dir: Path, pool_size: int = 0, pool_timeout: float = 10, prepare: bool = True
) -> dict[str, Any]:
    """The Django `DATABASES["default"]` entry for a libpq URL or conninfo, or the embedded server.

    With `pool_size`, connections come from a psycopg pool of at most that many per process: a web
    server under load then queues for a connection instead of opening one per request until PostgreSQL
    refuses clients. Only for processes that never fork after connecting (a pool does not survive a fork).
    A request waits at most `pool_timeout` seconds for a connection, then answers 503. Without `prepare`,
    prepared_cursor() binds server-side but prepares nothing (for a pooler that cannot keep prepared
    statements, docs/deploy.md)."""
    params = conninfo_to_dict(database_url) if database_url else embedded_conninfo(data_dir)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    name = params.pop("dbname", None) or "postgres"
    entry: dict[str, Any] = {
        "ENGINE": "foxgate.backend",  # Django's, with a pool check that costs no round trip
        "NAME": name,
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        "OPTIONS": params,  # sslmode and friends pass straight to libpq
        # Never persistent per thread: under ASGI every request runs in a thread of its own, so such
        # connections pile up until PostgreSQL refuses clients (measured: bench/submit.py hit "too many
        # clients"). The pool is how a web process reuses connections.
        "CONN_MAX_AGE": 0,
        # A connection is checked before it is reused: after a database restart only dead ones are left,
        # and each would otherwise fail one request. A pooled one by foxgate.backend, from its socket;
        # Django's own check (a query) is for the persistent connections of the worker cluster.
        "CONN_HEALTH_CHECKS": not pool_size,
        "TEST": {"NAME": f"test_{name}"},
    }
    if pool_size:
        params["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": pool_timeout,
            # psycopg_pool retries a failed connection with a backoff that doubles (1, 2, 4, 8 s...):
            # after a restart the next try could be 8 s away (measured: submits came back 8.7 s after the
            # database did). Giving up after 1 s lets the next request start a fresh attempt at once.
            "reconnect_timeout": 1,
        }
    if prepare:
        params["prepare_threshold"] = PREPARE_THRESHOLD  # Django's default, None, disables preparing
    return entry


class _PreparingCursor(ServerBindingCursor):
    """Django's server-binding cursor, preparing every statement it runs unless told otherwise.

    psycopg remembers what it prepared on a connection, and the server can disagree: a session behind a
    pooler that swapped it, or a DEALLOCATE psycopg did not send, no longer has the statement; a migration
    that added a column to a table a statement returns `*` of makes its plan unusable (a rolling upgrade
    runs old processes on the new schema, docs/deploy.md). Either fails before the statement did
    anything, so outside a transaction it runs again, unprepared, and the next run prepares it afresh:
    a round trip more, not an error."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any) -> Any:
        prepare = True if prepare is None else prepare
        try:
            return super().execute(query, params, prepare=prepare, **kwargs)
        except (psycopg.errors.InvalidSqlStatementName, psycopg.errors.FeatureNotSupported) as error:
            stale = isinstance(error, psycopg.errors.InvalidSqlStatementName) or (
                "cached plan must not change result type" in str(error)
            )
            if not stale or self.connection.info.transaction_status != TransactionStatus.IDLE:
                raise  # inside a transaction the error aborted it; its rollback clears psycopg's cache
            # psycopg has no public call that forgets what it prepared; this is what its rollback does,
            # and after the statement it sends DEALLOCATE ALL, so the next run prepares afresh.
            self.connection._prepared.clear()
            return super().execute(query, params, prepare=False, **kwargs)


class _PreparedDebugWrapper(CursorDebugWrapper):
    """Logs a prepared statement (DEBUG, tests' CaptureQueriesContext) with its values in, as Django logs
    a client-bound one: Django reads that text from psycopg, which keeps none for a prepared run."""

    def execute(self, sql: str, params: Any = None) -> Any:
        try:
            logged = self.db.ops.compose_sql(sql, params)
        except psycopg.DataError:
            logged = sql  # the statement will fail on the same value, and say why
        with self.debug_sql(logged, params):
            return CursorWrapper.execute(self, sql, params)  # not Django's logging execute: this is it


@async_unsafe
def prepared_cursor(using: BaseDatabaseWrapper = connection) -> CursorWrapper:
    """A cursor like `using.cursor()` whose statements PostgreSQL parses and plans once per connection.

    For the hot path's few large statements, run hundreds of times a second: with Django's client-side
    binding PostgreSQL parses, analyses and plans each afresh. Here the parameters travel apart
    (`%s` becomes `$1`), and psycopg prepares each distinct statement (text and parameter types) on its
    first run on a connection and reuses it after; a new connection (from the pool, after a restart)
    prepares again. Errors, execute wrappers and query logging are Django's, as with `cursor()`."""
    using.close_if_health_check_failed()  # as cursor() does: a persistent connection is checked once a job
    using.ensure_connection()
    using.validate_thread_sharing()
    with using.wrap_database_errors:
        cursor = _PreparingCursor(using.connection)
    return _PreparedDebugWrapper(cursor, using) if using.queries_logged else using.make_cursor(cursor)


def direct_conninfo() -> dict[str, Any]:
    """libpq parameters of Django's database, for connections Django does not manage (LISTEN, probes)."""
    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"],
        "host": db["HOST"],
        "port": db["PORT"],
    }
    return {k: v for k, v in params.items() if v} | {
        k: v
        for k, v in db["OPTIONS"].items()
        if k not in ("pool", "server_side_binding", "prepare_threshold")
    }


def insert_select(
    instance: models.Model, *, source: str, expressions: dict[str, str] | None = None
) -> tuple[str, list[Any]]:
    """SQL and parameters that insert `instance` once for each row of `source` (a CTE's name): how one
    statement inserts rows only if an earlier part of it (a conditional UPDATE) succeeded.

    Columns come from the model, so a field added later is inserted too; `expressions` replaces a
    column's value with SQL (a subquery on another CTE, the database's `now()`). Each value is cast to
    its column's type without length or precision (`varchar`, `numeric`): a SELECT list has no target
    type to infer, and an explicit `varchar(64)` would silently truncate where the assignment refuses
    a value that is too long, as an ORM insert does. Primary keys and database defaults left to the
    database are not listed."""
    expressions = expressions or {}
    database = connections[DEFAULT_DB_ALIAS]  # this thread's, looked up once rather than per field
    columns, values, params = [], [], []
    for field in instance._meta.local_concrete_fields:
        value = field.pre_save(instance, add=True)
        if field.column not in expressions and (
            isinstance(value, DatabaseDefault) or (field.primary_key and value is None)
        ):
            continue
        column, cast = _column_and_cast(field, database)
        columns.append(column)
        if field.column in expressions:
            values.append(expressions[field.column])
            continue
        values.append(cast)
        params.append(field.get_db_prep_save(value, database))
    table = database.ops.quote_name(instance._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {source}"  # noqa: S608
    return sql, params


_COLUMNS_AND_CASTS: dict[models.Field, tuple[str, str]] = {}


def _column_and_cast(field: models.Field, database: BaseDatabaseWrapper) -> tuple[str, str]:
    """A field's quoted column and its value's placeholder with the cast, worked out once per process:
    they depend on the field and the backend only (every connection here is PostgreSQL's), and working
    out a column's type for every row of every submit was a few per cent of the web process's CPU
    (bench/results/webcpu2.md)."""
    found = _COLUMNS_AND_CASTS.get(field)
    if found is None:
        cast = re.sub(r"[(].*", "", field.db_type(database))
        found = _COLUMNS_AND_CASTS[field] = (database.ops.quote_name(field.column), f"%s::{cast}")
    return found


def embedded_conninfo(data_dir: Path) -> dict[str, Any]:
    """Start (or attach to) the embedded server and make sure FoxGate's database exists in it."""
    pgserver = _pgserver()
    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    release_exited_processes(data_dir)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    params = conninfo_to_dict(server.get_uri())
    _ensure_database(params, EMBEDDED_DATABASE_NAME)
    params["dbname"] = EMBEDDED_DATABASE_NAME
    return params


def release_exited_processes(data_dir: Path) -> None:
    """Detach processes that no longer run from the embedded server.

    pgserver stops the server when its last attached process exits through `atexit`; a process that
    was killed, or left through `os._exit` as forked workers do, never detaches, which would keep the
    server alive after everything that used it is gone.
    """
    pgserver = _pgserver()
    handles = data_dir / "pgdata" / ".handle_pids.json"
    with pgserver.PostgresServer._lock:
        if handles.exists():
            pids = [pid for pid in json.loads(handles.read_text()) if _process_runs(pid)]
            handles.write_text(json.dumps(pids))


def _pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver copes, so say nothing.
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_database(params: dict[str, Any], name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**params, autocommit=True) as conn:
        # Processes starting together would race to create it; a session lock makes them take turns.
        conn.execute("SELECT pg_advisory_lock(hashtext('foxgate-create-database'))")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
