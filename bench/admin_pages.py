"""Server-side render time of the admin pages over a production-sized history.

Seeds a database of its own (`foxgate_bench_admin` on the same PostgreSQL server as FoxGate: the embedded
one, or the one DATABASE_URL names) with 1,000,000 tasks and 5,000,000 ledger lines over ~50 tenants,
~500 keys, ~20 models, ~10 channels and 90 days, fills the usage rollup, then renders each admin page
with Django's test client, logged in as a superuser and as a tenant admin: one warm-up, then N timed
runs. Records median and max render time, the SQL query count and the slowest query of each page (with
its EXPLAIN ANALYZE when slow) in bench/results/admin_pages.json, and prints a table.

The seeded database is kept between runs: seeding is skipped when it is complete with the same sizes.

    python bench/admin_pages.py [--reseed] [--runs 5] [--tasks 1000000] [--ledger 5000000]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import django
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_MS = 1000

MODEL_NAMES = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "claude-sonnet-4",
    "claude-3-5-haiku",
    "claude-opus-4",
    "gemini-2.0-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "llama-3.3-70b",
    "mistral-large",
    "qwen-2.5-72b",
    "deepseek-v3",
    "deepseek-r1",
    "grok-3",
    "command-r-plus",
    "gpt-4o-audio",
    "gemini-2.5-flash-lite",
]
# Credits per million tokens, input; output is four times as much.
INPUT_PRICES = ["2.5", "0.15", "2", "0.4", "1.1", "3", "0.8", "15", "0.1", "1.25"]
PROVIDERS = ["openai", "anthropic", "gemini"]
# Failed tasks: (error code, share of failures, message, HTTP status of the deciding attempt).
ERRORS = [
    ("upstream_error", 0.35, "Upstream answered 502: Bad Gateway", 502),
    ("upstream_timeout", 0.25, "No answer from upstream within 120 s", None),
    ("upstream_rejected", 0.15, "Upstream refused the request: 400 invalid_request_error", 400),
    ("all_platforms_exhausted", 0.12, "Every channel serving this model failed or is cooling down", 429),
    ("content_filtered", 0.08, "The upstream's content filter blocked the output", 400),
    ("internal_error", 0.05, "Internal error while relaying the task", None),
]
BAD_CHANNEL = 4  # fails about 10% of its calls; the others about 2.7%: about 3% overall


# --------------------------------------------------------------------------------------------------
# The database


def server_params() -> dict[str, Any]:
    """Connection parameters of FoxGate's PostgreSQL server: DATABASE_URL's, or the embedded one's.

    Attaching to the embedded server keeps it running for as long as this process does."""
    if os.environ.get("DATABASE_URL"):
        return conninfo_to_dict(os.environ["DATABASE_URL"])
    from foxgate.database import embedded_conninfo

    return embedded_conninfo(Path(os.environ.get("FOXGATE_DATA_DIR", str(ROOT / ".foxgate"))))


def seeded_marker(server: dict[str, Any], name: str, sizes: dict[str, int]) -> dict[str, Any] | None:
    """The seeding record of a complete database with these sizes, or None."""
    admin = {**server, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return None
    with psycopg.connect(**{**server, "dbname": name}, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('bench_seed')").fetchone()[0]:
            return None
        row = conn.execute("SELECT info FROM bench_seed").fetchone()
        if row is None or row[0].get("sizes") != sizes:
            return None
        tasks = conn.execute("SELECT count(*) FROM tasks_task").fetchone()[0]
        ledger = conn.execute("SELECT count(*) FROM tenants_ledgerentry").fetchone()[0]
        if tasks != sizes["tasks"] or ledger != sizes["ledger"]:
            return None
        return row[0]


def recreate_database(server: dict[str, Any], name: str) -> None:
    with psycopg.connect(**{**server, "dbname": "postgres"}, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --------------------------------------------------------------------------------------------------
# Seeding: set-based SQL only


TASKS_SQL = """
INSERT INTO tasks_task (
    id, tenant_id, api_key_id, model, catalog_model_id, price_id, protocol, request, stream, sync,
    status, progress, result, error_code, error_message, user_group, channel_id,
    credits_reserved, credits_charged, charge_basis, created_at, started_at, finished_at)
SELECT
    'task-llmrouter-' || floor(extract(epoch FROM created_at))::bigint || '-' || lpad(to_hex(n), 8, '0'),
    tenant_id, api_key_id, model_name, model_id, model_id, protocol,
    jsonb_build_object(
        'messages', jsonb_build_array(jsonb_build_object(
            'role', 'user', 'content', substr(%(lorem)s, 1 + mod(n, 997), prompt_chars))),
        'max_tokens', max_tokens, 'temperature', 0.7, 'stream', stream),
    stream, sync, status,
    CASE status WHEN 'pending' THEN 0 WHEN 'processing' THEN 40 ELSE 100 END,
    CASE WHEN status = 'completed' THEN jsonb_build_object(
        'id', 'chatcmpl-' || lpad(to_hex(n), 8, '0'),
        'object', 'chat.completion',
        'created', floor(extract(epoch FROM finished_at))::bigint,
        'model', model_name,
        'choices', jsonb_build_array(jsonb_build_object(
            'index', 0,
            'message', jsonb_build_object(
                'role', 'assistant', 'content', substr(%(lorem)s, 1 + mod(n * 7, 1009), answer_chars)),
            'finish_reason', 'stop')),
        'usage', jsonb_build_object(
            'prompt_tokens', prompt_tokens,
            'completion_tokens', completion_tokens,
            'total_tokens', prompt_tokens + completion_tokens)) END,
    error_code,
    coalesce((%(error_messages)s::text[])[array_position(%(error_codes)s::text[], error_code)], ''),
    (%(groups)s::text[])[tenant_id],
    CASE WHEN status = 'pending' OR error_code = 'internal_error' THEN NULL ELSE channel_id END,
    reserved,
    CASE status WHEN 'completed' THEN charged WHEN 'failed' THEN 0 END,
    CASE status WHEN 'completed' THEN 'provider_usage' WHEN 'failed' THEN 'nothing_delivered' ELSE '' END,
    created_at,
    started_at,
    finished_at
FROM (
    SELECT *,
        CASE WHEN status = 'failed' THEN
            CASE WHEN r_err < 0.35 THEN 'upstream_error'
                 WHEN r_err < 0.60 THEN 'upstream_timeout'
                 WHEN r_err < 0.75 THEN 'upstream_rejected'
                 WHEN r_err < 0.87 THEN 'all_platforms_exhausted'
                 WHEN r_err < 0.95 THEN 'content_filtered'
                 ELSE 'internal_error' END
        ELSE '' END AS error_code,
        CASE WHEN status = 'pending' THEN NULL ELSE created_at + queue_delay END AS started_at,
        CASE WHEN status IN ('completed', 'failed')
             THEN least(%(now)s, created_at + queue_delay + run_time) END AS finished_at
    FROM (
        SELECT *,
            CASE WHEN created_at > %(now)s - interval '10 minutes' AND r_state < 0.35 THEN 'pending'
                 WHEN created_at > %(now)s - interval '10 minutes' AND r_state < 0.75 THEN 'processing'
                 WHEN r_fail < CASE WHEN channel_id = %(bad_channel)s THEN 0.10 ELSE 0.027 END THEN 'failed'
                 ELSE 'completed' END AS status,
            (%(model_names)s::text[])[model_id] AS model_name,
            round((prompt_tokens * (%(price_in)s::numeric[])[model_id]
                   + max_tokens * (%(price_out)s::numeric[])[model_id]) / 1000000, 6) AS reserved,
            round((prompt_tokens * (%(price_in)s::numeric[])[model_id]
                   + completion_tokens * (%(price_out)s::numeric[])[model_id]) / 1000000, 6) AS charged,
            least(1200, 20 + prompt_tokens) AS prompt_chars,
            least(1500, 10 + 2 * completion_tokens) AS answer_chars,
            interval '1 millisecond' * (20 + floor(500 * r_delay)) AS queue_delay,
            interval '1 millisecond' * (400 + 20 * completion_tokens) AS run_time
        FROM (
            SELECT *,
                CASE WHEN r_chan < 0.85 THEN mod(model_id - 1, %(channels)s) + 1
                     ELSE mod(model_id, %(channels)s) + 1 END AS channel_id,
                (ARRAY[1024, 2048, 4096])[1 + mod(api_key_id, 3)] AS max_tokens,
                CASE WHEN r_proto < 0.8 THEN 'text' WHEN r_proto < 0.9 THEN 'vision' ELSE 'custom' END
                    AS protocol,
                r_stream < 0.3 AS stream,
                r_stream >= 0.3 AND r_stream < 0.38 AS sync,
                20 + floor(4000 * power(r_prompt, 3))::int AS prompt_tokens,
                5 + floor(1200 * power(r_comp, 2))::int AS completion_tokens
            FROM (
                SELECT *,
                    CASE WHEN r_model < 0.7 THEN mod(api_key_id * 7, %(models)s) + 1
                         WHEN r_model < 0.9 THEN mod(api_key_id * 7 + 3, %(models)s) + 1
                         ELSE 1 + floor(%(models)s * r_model2)::int END AS model_id
                FROM (
                    SELECT *,
                        (tenant_id - 1) * %(keys_per_tenant)s + 1
                            + floor(%(keys_per_tenant)s * power(r_key, 2))::int AS api_key_id
                    FROM (
                        SELECT n,
                            %(start)s + %(span)s * ((n - 1 + random()) / %(tasks)s) AS created_at,
                            least(%(tenants)s, 1 + floor(%(tenants)s * power(random(), 2))::int) AS tenant_id,
                            random() AS r_key, random() AS r_model, random() AS r_model2,
                            random() AS r_chan, random() AS r_state, random() AS r_fail, random() AS r_err,
                            random() AS r_prompt, random() AS r_comp, random() AS r_proto,
                            random() AS r_stream, random() AS r_delay
                        FROM generate_series(1, %(tasks)s) AS n
                    ) draws
                ) keyed
            ) modelled
        ) shaped
    ) decided
) finished
"""

# A sample of tasks gets its upstream calls: every failed task and one in ten completed ones; some of
# them took two calls, the first failing on the model's other channel.
ATTEMPTS_SQL = """
WITH sample AS (
    SELECT id, channel_id, catalog_model_id, status, error_code, error_message, started_at, finished_at,
           stream, random() AS r
    FROM tasks_task
    WHERE status = 'failed' OR (status = 'completed' AND random() < 0.1)
), calls AS (
    SELECT *,
        (status = 'failed' AND (error_code = 'all_platforms_exhausted' OR r < 0.4))
            OR (status = 'completed' AND r < 0.08) AS retried,
        coalesce(channel_id, mod(catalog_model_id - 1, %(channels)s) + 1) AS final_channel
    FROM sample
)
INSERT INTO tasks_taskattempt (
    task_id, channel_id, number, started_at, finished_at, latency_ms, first_token_ms, http_status,
    error_code, error_message)
SELECT id, CASE WHEN final_channel = %(channels)s THEN 1 ELSE final_channel + 1 END, 1,
       started_at, started_at + interval '4 seconds', 4000, NULL, 502,
       'upstream_error', 'Upstream answered 502: Bad Gateway'
FROM calls WHERE retried
UNION ALL
SELECT id, final_channel, CASE WHEN retried THEN 2 ELSE 1 END,
       started_at + CASE WHEN retried THEN interval '4 seconds' ELSE interval '0' END,
       finished_at,
       greatest(1, (extract(epoch FROM finished_at - started_at) * 1000)::int
                   - CASE WHEN retried THEN 4000 ELSE 0 END),
       CASE WHEN stream AND status = 'completed' THEN 300 + (r * 900)::int END,
       CASE WHEN status = 'completed' THEN 200
            ELSE (%(http_statuses)s::int[])[array_position(%(error_codes)s::text[], error_code)] END,
       CASE WHEN error_code IN ('all_platforms_exhausted', 'internal_error') THEN 'upstream_error'
            ELSE error_code END,
       error_message
FROM calls
"""

# Every task's hold, then its capture and release when it finished (as tenants/services.py writes them);
# top-ups and the odd adjustment fill up to the requested number of lines. Written oldest first, as a
# live ledger is.
LEDGER_SQL = """
INSERT INTO tenants_ledgerentry (
    tenant_id, api_key_id, task_id, price_id, kind, amount, held_change, memo, created_at)
SELECT tenant_id, api_key_id, task_id, price_id, kind, amount, held_change, memo, created_at
FROM (
    SELECT t.tenant_id, t.api_key_id, t.id AS task_id, t.price_id, line.*
    FROM tasks_task t
    CROSS JOIN LATERAL (VALUES
        ('hold', 0::numeric, t.credits_reserved, '', t.created_at, true),
        ('capture', -t.credits_charged, -least(t.credits_charged, t.credits_reserved), t.charge_basis,
         t.finished_at, t.credits_charged > 0),
        ('release', 0::numeric, -(t.credits_reserved - least(t.credits_charged, t.credits_reserved)), '',
         t.finished_at, t.finished_at IS NOT NULL AND t.credits_reserved > t.credits_charged)
    ) AS line (kind, amount, held_change, memo, created_at, written)
    WHERE line.written
    UNION ALL
    SELECT tenant_id, NULL, NULL, NULL, kind,
           CASE WHEN kind = 'topup' THEN (ARRAY[10, 20, 50, 100, 500])[1 + floor(5 * r_amount)::int]
                ELSE round((20 * r_amount - 10)::numeric, 2) END,
           0, CASE WHEN kind = 'topup' THEN 'auto-recharge' ELSE 'manual correction' END,
           created_at, true
    FROM (
        SELECT least(%(tenants)s, 1 + floor(%(tenants)s * power(random(), 2))::int) AS tenant_id,
               %(start)s + %(span)s * ((n - 1 + random()) / %(extra)s) AS created_at,
               CASE WHEN random() < 0.005 THEN 'adjustment' ELSE 'topup' END AS kind,
               random() AS r_amount
        FROM generate_series(1, %(extra)s) AS n
    ) credits
) lines (tenant_id, api_key_id, task_id, price_id, kind, amount, held_change, memo, created_at, written)
ORDER BY created_at
"""

LEDGER_TASK_LINES_SQL = """
SELECT count(*)
    + count(*) FILTER (WHERE credits_charged > 0)
    + count(*) FILTER (WHERE finished_at IS NOT NULL AND credits_reserved > credits_charged)
FROM tasks_task
"""

BULK_TABLES = ("tasks_task", "tasks_taskattempt", "tenants_ledgerentry")


def lorem(length: int = 4000) -> str:
    """Filler text that prompts and answers are cut from."""
    paragraph = (
        "Summarise the attached support ticket for the customer, then draft a short answer that explains "
        "the refund policy, lists the order numbers involved and proposes a next step. Keep the tone "
        "friendly and the reply under two hundred words; translate it into French as well. "
    )
    return (paragraph * (length // len(paragraph) + 1))[:length]


def secondary_indexes(cursor, table: str) -> list[tuple[str, str]]:
    """The table's indexes that back no constraint (primary key and unique constraints stay)."""
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        """,
        [table],
    )
    return cursor.fetchall()


def seed(args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    """Fill the freshly migrated bench database; returns the seeding record."""
    from django.db import connection

    from tasks.rollups import usage_rollup

    steps: dict[str, float] = {}
    started = time.perf_counter()

    def step(name: str, statement: str, params: Any = None) -> int:
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            count = cursor.rowcount
        steps[name] = round(steps.get(name, 0) + time.perf_counter() - t0, 1)
        print(f"  {name}: {count:,} rows, {steps[name]:.1f} s", flush=True)
        return count

    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=args.days)
    tenants, keys, models, channels = args.tenants, args.keys, args.models, args.channels
    keys_per_tenant = max(1, keys // tenants)
    keys = keys_per_tenant * tenants
    names = (MODEL_NAMES + [f"model-{i}" for i in range(len(MODEL_NAMES) + 1, models + 1)])[:models]
    price_in = [
        Decimal(INPUT_PRICES[i % len(INPUT_PRICES)]) * (1 + i // len(INPUT_PRICES)) for i in range(models)
    ]
    price_out = [p * 4 for p in price_in]
    groups = ["enterprise" if t % 10 == 0 else "default" for t in range(1, tenants + 1)]
    common = {
        "now": now,
        "start": start,
        "span": now - start,
        "tenants": tenants,
        "keys_per_tenant": keys_per_tenant,
        "models": models,
        "channels": channels,
        "model_names": names,
        "price_in": price_in,
        "price_out": price_out,
        "groups": groups,
        "bad_channel": BAD_CHANNEL,
        "error_codes": [e[0] for e in ERRORS],
        "error_messages": [e[2] for e in ERRORS],
        "http_statuses": [e[3] for e in ERRORS],
        "lorem": lorem(),
    }

    with connection.cursor() as cursor:
        # This session only: big sorts and index builds in memory, no FK trigger per row (the rows are
        # consistent by construction), no waiting for WAL flushes, a reproducible random().
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cursor.fetchone()[0]
        cursor.execute("SET work_mem = '1GB'")
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET jit = off")
        if superuser:
            cursor.execute("SET session_replication_role = replica")
        dropped = {table: secondary_indexes(cursor, table) for table in BULK_TABLES}
        for indexes in dropped.values():
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SELECT setseed(0.42)")

    print("Seeding:", flush=True)
    step(
        "tenants",
        """
        INSERT INTO tenants_tenant (id, slug, name, status, "group", balance, held, created_at, budget,
            budget_period, max_concurrency, period_spend, period_started_at, rpm, tpm)
        SELECT t, 'tenant-' || lpad(t::text, 3, '0'), 'Tenant ' || t,
               CASE WHEN mod(t, 25) = 0 THEN 'suspended' ELSE 'active' END,
               (%(groups)s::text[])[t], 0, 0, %(start)s - interval '30 days',
               CASE WHEN mod(t, 3) = 0 THEN 50000 END, 'month',
               CASE WHEN mod(t, 2) = 0 THEN 50 END, 0, date_trunc('month', %(now)s),
               CASE WHEN mod(t, 2) = 0 THEN 600 END, CASE WHEN mod(t, 4) = 0 THEN 2000000 END
        FROM generate_series(1, %(tenants)s) t
        """,
        common,
    )
    step(
        "keys",
        """
        INSERT INTO tenants_apikey (id, tenant_id, key_id, digest, pepper_id, name, created_at, expires_at,
            revoked_at, last_used_at, allowed_ips, allowed_models, budget, budget_period, held,
            max_concurrency, period_spend, period_started_at, previous_digest, previous_expires_at,
            previous_pepper_id, rpm, tpm)
        SELECT k, 1 + (k - 1) / %(keys_per_tenant)s, 'bk' || lpad(k::text, 10, '0'),
               md5(k::text) || md5('x' || k), '1', 'key ' || k, %(start)s - interval '20 days',
               NULL, CASE WHEN mod(k, 20) = 0 THEN %(now)s - interval '3 days' END, NULL,
               '[]', '[]', NULL, 'month', 0, NULL, 0, date_trunc('month', %(now)s), '', NULL, '',
               NULL, NULL
        FROM generate_series(1, %(keys)s) k
        """,
        {**common, "keys": keys},
    )
    step(
        "models",
        """
        INSERT INTO tasks_model (id, name, capabilities, max_output_tokens, enabled, created_at)
        SELECT m, (%(model_names)s::text[])[m], '["text", "vision"]', NULL, true, %(start)s
        FROM generate_series(1, %(models)s) m
        """,
        common,
    )
    step(
        "prices",
        """
        INSERT INTO tasks_price (id, model_id, "group", version, input_per_million,
            cached_input_per_million, output_per_million, created_at)
        SELECT m, m, '', 1, (%(price_in)s::numeric[])[m], NULL, (%(price_out)s::numeric[])[m], %(start)s
        FROM generate_series(1, %(models)s) m
        """,
        common,
    )
    step(
        "channels",
        """
        INSERT INTO tasks_channel (id, name, provider, base_url, enabled, created_at, api_key_encrypted,
            circuit_changed_at, circuit_open_until, circuit_reason, circuit_state, disabled_reason,
            max_concurrency, model_mapping, priority, timeout_seconds, weight)
        SELECT c, 'channel-' || lpad(c::text, 2, '0') || '-' || provider, provider,
               'https://upstream-' || c || '.example.com/v1', true, %(start)s, '',
               NULL, NULL, '', 'closed', '', NULL, '{}', CASE WHEN mod(c, 2) = 1 THEN 10 ELSE 0 END, NULL, 1
        FROM generate_series(1, %(channels)s) c,
            LATERAL (SELECT (ARRAY['openai', 'anthropic', 'gemini'])[1 + mod(c, 3)] AS provider) p
        """,
        common,
    )
    step(
        "served models",
        """
        INSERT INTO tasks_channel_served_models (channel_id, model_id)
        SELECT DISTINCT c, m FROM generate_series(1, %(models)s) m,
            LATERAL (VALUES (mod(m - 1, %(channels)s) + 1), (mod(m, %(channels)s) + 1)) v (c)
        """,
        common,
    )
    step("tasks", TASKS_SQL, {**common, "tasks": sizes["tasks"]})
    step("attempts", ATTEMPTS_SQL, common)
    with connection.cursor() as cursor:
        cursor.execute(LEDGER_TASK_LINES_SQL)
        task_lines = cursor.fetchone()[0]
    extra = max(0, sizes["ledger"] - task_lines)
    if task_lines > sizes["ledger"]:
        raise SystemExit(f"{task_lines:,} task ledger lines already exceed --ledger {sizes['ledger']:,}")
    step("ledger", LEDGER_SQL, {**common, "extra": extra})

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        for indexes in dropped.values():
            for _, definition in indexes:
                cursor.execute(definition)
        cursor.execute("SET session_replication_role = origin")
        for table in (
            "tenants_tenant",
            "tenants_apikey",
            "tasks_model",
            "tasks_price",
            "tasks_channel",
            "tasks_channel_served_models",
            "tasks_taskattempt",
            "tenants_ledgerentry",
        ):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
            )
    steps["indexes"] = round(time.perf_counter() - t0, 1)
    print(f"  indexes: {sum(len(i) for i in dropped.values())} rebuilt, {steps['indexes']:.1f} s", flush=True)

    step(
        "balances",
        """
        UPDATE tenants_tenant t SET balance = s.balance, held = s.held
        FROM (SELECT tenant_id, sum(amount) AS balance, sum(held_change) AS held
              FROM tenants_ledgerentry GROUP BY tenant_id) s
        WHERE s.tenant_id = t.id
        """,
    )
    step(
        "key usage",
        """
        UPDATE tenants_apikey k SET last_used_at = s.last_used, held = s.held
        FROM (SELECT api_key_id, max(created_at) AS last_used,
                     coalesce(sum(credits_reserved) FILTER (WHERE status IN ('pending', 'processing')), 0)
                         AS held
              FROM tasks_task GROUP BY api_key_id) s
        WHERE s.api_key_id = k.id
        """,
    )
    t0 = time.perf_counter()
    written = usage_rollup(now=now + timedelta(minutes=1))
    steps["usage rollup"] = round(time.perf_counter() - t0, 1)
    print(f"  usage rollup: {written:,} rows, {steps['usage rollup']:.1f} s", flush=True)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    steps["vacuum analyze"] = round(time.perf_counter() - t0, 1)
    print(f"  vacuum analyze: {steps['vacuum analyze']:.1f} s", flush=True)

    info = {
        "sizes": sizes,
        "seeded_at": now.isoformat(),
        "seconds": round(time.perf_counter() - started, 1),
        "steps": steps,
    }
    with connection.cursor() as cursor:
        cursor.execute("RESET ALL")
        cursor.execute("CREATE TABLE bench_seed (info jsonb NOT NULL)")
        cursor.execute("INSERT INTO bench_seed VALUES (%s)", [json.dumps(info)])
    print(f"Seeded in {info['seconds']:.0f} s", flush=True)
    return info


def dataset_summary() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:

        def one(statement: str) -> Any:
            cursor.execute(statement)
            return cursor.fetchone()[0]

        cursor.execute("SELECT status, count(*) FROM tasks_task GROUP BY status ORDER BY 2 DESC")
        statuses = dict(cursor.fetchall())
        cursor.execute(
            "SELECT error_code, count(*) FROM tasks_task WHERE error_code <> '' GROUP BY 1 ORDER BY 2 DESC"
        )
        errors = dict(cursor.fetchall())
        cursor.execute("SELECT kind, count(*) FROM tenants_ledgerentry GROUP BY kind ORDER BY 2 DESC")
        kinds = dict(cursor.fetchall())
        total = sum(statuses.values())
        return {
            "tenants": one("SELECT count(*) FROM tenants_tenant"),
            "keys": one("SELECT count(*) FROM tenants_apikey"),
            "models": one("SELECT count(*) FROM tasks_model"),
            "channels": one("SELECT count(*) FROM tasks_channel"),
            "tasks": total,
            "task_statuses": statuses,
            "failed_share_percent": round(100 * statuses.get("failed", 0) / max(total, 1), 2),
            "task_error_codes": errors,
            "task_attempts": one("SELECT count(*) FROM tasks_taskattempt"),
            "ledger_lines": sum(kinds.values()),
            "ledger_kinds": kinds,
            "usage_rollup_rows": one("SELECT count(*) FROM tasks_usagerollup"),
            "oldest_task": one("SELECT min(created_at) FROM tasks_task").isoformat(),
            "newest_task": one("SELECT max(created_at) FROM tasks_task").isoformat(),
            "database_size": one("SELECT pg_size_pretty(pg_database_size(current_database()))"),
        }


# --------------------------------------------------------------------------------------------------
# Measuring


def users() -> tuple[Any, Any, int]:
    """The superuser, and an admin of the busiest tenant (returned with that tenant's id)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Sum

    from tasks.models import UsageRollup
    from tenants.models import Membership

    user_model = get_user_model()
    root = user_model.objects.filter(username="bench-root").first()
    if root is None:
        root = user_model.objects.create_superuser("bench-root", "root@bench.invalid", None)
    busiest = (
        UsageRollup.objects.values("tenant_id").annotate(n=Sum("tasks")).order_by("-n").first()["tenant_id"]
    )
    member, _ = user_model.objects.get_or_create(
        username="bench-tenant-admin", defaults={"is_staff": True, "email": "admin@bench.invalid"}
    )
    Membership.objects.update_or_create(
        user=member, tenant_id=busiest, defaults={"role": Membership.Role.ADMIN}
    )
    Membership.objects.filter(user=member).exclude(tenant_id=busiest).delete()
    return root, member, busiest


def pages(busiest: int) -> tuple[list[tuple[str, str, tuple[str, ...]]], int]:
    """(page, URL, who renders it) for every page measured."""
    from django.db.models import Sum

    from tasks.models import Task, TaskAttempt, UsageRollup
    from tenants.models import LedgerEntry

    smallest = (
        UsageRollup.objects.values("tenant_id").annotate(n=Sum("tasks")).order_by("n").first()["tenant_id"]
    )
    busy_model = (
        UsageRollup.objects.filter(tenant_id=busiest)
        .values("model")
        .annotate(n=Sum("tasks"))
        .order_by("-n")
        .first()["model"]
    )
    detail = (
        TaskAttempt.objects.filter(number=2, task__tenant_id=busiest, task__status="failed")
        .order_by("-started_at")
        .values_list("task_id", flat=True)
        .first()
    ) or Task.objects.filter(tenant_id=busiest).order_by("-created_at").values_list("id", flat=True)[0]
    ledger_task = (
        LedgerEntry.objects.filter(tenant_id=busiest, kind="capture")
        .order_by("-created_at")
        .values_list("task_id", flat=True)
        .first()
    )
    both = ("superuser", "tenant admin")
    tasks = "/admin/tasks/task/"
    ledger = "/admin/tenants/ledgerentry/"
    return [
        ("tasks", tasks, both),
        ("tasks status=failed", f"{tasks}?status__exact=failed", both),
        ("tasks by tenant (own / smallest)", f"{tasks}?tenant={{tenant}}", both),
        (f"tasks by model ({busy_model})", f"{tasks}?model={busy_model}", both),
        ("tasks error=content_filtered", f"{tasks}?error_code=content_filtered", both),
        (f"tasks by channel ({BAD_CHANNEL})", f"{tasks}?channel={BAD_CHANNEL}", both),
        ("tasks created last 7 days", f"{tasks}?since=7", both),
        ("tasks search by id", f"{tasks}?q={detail}", both),
        ("task detail", f"{tasks}{detail}/change/", both),
        ("failures", f"{tasks}failures/", both),
        ("usage dashboard", f"{tasks}usage/", both),
        ("ledger", ledger, both),
        ("ledger kind=capture", f"{ledger}?kind__exact=capture", both),
        ("ledger kind=adjustment (rare)", f"{ledger}?kind__exact=adjustment", both),
        ("ledger search by task", f"{ledger}?q={ledger_task}", both),
        ("tenants", "/admin/tenants/tenant/", both),
        ("keys", "/admin/tenants/apikey/", both),
        ("channels (health from attempts)", "/admin/tasks/channel/", ("superuser",)),
    ], smallest


def measure(client, url: str, runs: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    warm = client.get(url)
    times: list[float] = []
    captures: list[list[dict[str, str]]] = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        captures.append(ctx.captured_queries)
    counts = {len(c) for c in captures}
    if len(counts) == 1:  # the same queries each run: the slowest by its median time over the runs
        medians = [statistics.median(float(c[i]["time"]) for c in captures) for i in range(counts.pop())]
    else:
        medians = [float(q["time"]) for q in captures[-1]]
        captures = captures[-1:]
    slowest = max(range(len(medians)), key=medians.__getitem__, default=None)
    context = getattr(response, "context_data", None) or {}
    changelist = context.get("cl")
    return {
        "status": response.status_code,
        "warm_status": warm.status_code,
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "queries": len(captures[-1]),
        "query_ms_total": round(1000 * sum(medians), 1),
        "rows": len(changelist.result_list) if changelist is not None else None,
        # Django drops a list filter that offers no choices, silently: this tells whether any applied.
        "filters_applied": changelist.has_active_filters if changelist is not None else None,
        "slowest_query_ms": round(1000 * medians[slowest], 1) if slowest is not None else None,
        "slowest_query": captures[-1][slowest]["sql"] if slowest is not None else None,
    }


def explain(statement: str) -> str | None:
    from django.db import connection

    if not statement.lstrip().upper().startswith("SELECT"):
        return None
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement)
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="foxgate_bench_admin")
    parser.add_argument("--reseed", action="store_true", help="drop the bench database and seed it again")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=5_000_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--explain-ms", type=float, default=100, help="EXPLAIN ANALYZE slowest queries above this"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "admin_pages.json")
    args = parser.parse_args()
    if args.channels < BAD_CHANNEL:
        parser.error(f"--channels must be at least {BAD_CHANNEL}")

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
    os.environ.setdefault("FOXGATE_DEBUG", "0")  # render as production does
    os.environ.setdefault("FOXGATE_LOG_LEVEL", "WARNING")
    sizes = {
        "tasks": args.tasks,
        "ledger": args.ledger,
        "tenants": args.tenants,
        "keys": args.keys,
        "models": args.models,
        "channels": args.channels,
        "days": args.days,
    }
    server = server_params()
    info = None if args.reseed else seeded_marker(server, args.database, sizes)
    if info is None:
        recreate_database(server, args.database)
    os.environ["DATABASE_URL"] = make_conninfo(**{**server, "dbname": args.database})
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", interactive=False, verbosity=0)
    if info is None:
        info = seed(args, sizes)
    else:
        print(f"Using the database seeded at {info['seeded_at']} ({info['seconds']:.0f} s to seed)")
        age = datetime.now(UTC) - datetime.fromisoformat(info["seeded_at"])
        if age > timedelta(days=2):
            print(f"  seeded {age.days} days ago: recent-activity filters and dashboards see less; --reseed")
    dataset = dataset_summary()

    root, member, busiest = users()
    page_list, smallest = pages(busiest)
    clients = {"superuser": Client(), "tenant admin": Client()}
    clients["superuser"].force_login(root)
    clients["tenant admin"].force_login(member)
    results = []
    for page, url, who in page_list:
        for role in who:
            tenant = busiest if role == "tenant admin" else smallest
            target = url.replace("{tenant}", str(tenant))
            row = {"page": page, "user": role, "url": target, **measure(clients[role], target, args.runs)}
            if row["median_ms"] > TARGET_MS or (row["slowest_query_ms"] or 0) > args.explain_ms:
                row["explain"] = explain(row["slowest_query"])
            results.append(row)
            print(
                f"  {page:<38} {role:<12} {row['median_ms']:>8.1f} ms  "
                f"{row['queries']:>3} q  slowest {row['slowest_query_ms']} ms",
                flush=True,
            )

    result = {
        "benchmark": "admin_pages",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "database": args.database,
        "debug": settings.DEBUG,
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "seeding": info,
        "dataset": dataset,
        "tenant_admin_tenant": busiest,
        "smallest_tenant": smallest,
        "pages": results,
        "over_target": [f"{r['page']} ({r['user']})" for r in results if r["median_ms"] > TARGET_MS],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'page':<40} {'user':<13} {'median':>8} {'max':>8} {'queries':>7} {'slowest q':>9} {'rows':>5}")
    for r in result["pages"]:
        flag = "  OVER" if r["median_ms"] > result["target_ms"] else ""
        status = "" if r["status"] == 200 else f"  HTTP {r['status']}"
        rows = "" if r["rows"] is None else r["rows"]
        print(
            f"{r['page']:<40} {r['user']:<13} {r['median_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['queries']:>7} {r['slowest_query_ms'] or 0:>9.1f} {rows:>5}{flag}{status}"
        )
    print("(times in ms)")
    for r in result["pages"]:
        if r["median_ms"] > result["target_ms"] and r.get("explain"):
            print(
                f"\n{r['page']} ({r['user']}): slowest query {r['slowest_query_ms']} ms\n{r['slowest_query']}"
            )
            print(r["explain"])


if __name__ == "__main__":
    main()
