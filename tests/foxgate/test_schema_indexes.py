"""The tables every answer writes carry no index another one already serves (each costs every insert and
every update that is not a HOT one), and every lookup by a foreign key still finds an index."""

from typing import NamedTuple

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

# Written on every answer: a task row, its attempts, its ledger lines and, when streamed, its chunks.
PER_ANSWER_TABLES = ["tasks_task", "tasks_taskattempt", "tenants_ledgerentry", "tasks_streamchunk"]

# Lookups by foreign key: by the referencing side (task history, attempts of a task) and by the
# database itself when a referenced row is deleted or its key checked.
LOOKUPS = [
    ("tasks_task", "tenant_id"),
    ("tasks_task", "api_key_id"),
    ("tasks_task", "channel_id"),
    ("tasks_task", "catalog_model_id"),
    ("tasks_task", "price_id"),
    ("tasks_taskattempt", "task_id"),
    ("tasks_taskattempt", "channel_id"),
    ("tenants_ledgerentry", "tenant_id"),
    ("tenants_ledgerentry", "task_id"),
    ("tenants_ledgerentry", "api_key_id"),
    ("tenants_ledgerentry", "price_id"),
    ("tasks_streamchunk", "task_id"),
]


class Index(NamedTuple):
    name: str
    columns: list[str]  # its key columns, in order
    unique: bool
    predicate: str | None  # a partial index's WHERE, as PostgreSQL prints it
    definition: str  # its CREATE INDEX statement


def indexes(table: str) -> list[Index]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname,
                ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),
                x.indisunique, pg_get_expr(x.indpred, x.indrelid), pg_get_indexdef(x.indexrelid)
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname = %s
            """,
            [table],
        )
        return [Index(*row) for row in cursor.fetchall()]


def serves(index: Index, columns: list[str]) -> bool:
    """Whether `index` serves every lookup an index on `columns` would: it leads with them and covers
    every row with a value there (no predicate, or only "the first column is not null")."""
    leads = index.columns[: len(columns)] == columns
    return leads and index.predicate in (None, f"({columns[0]} IS NOT NULL)")


@pytest.mark.parametrize("table", PER_ANSWER_TABLES)
def test_no_index_of_a_per_answer_table_duplicates_another(table):
    found = indexes(table)
    redundant = [
        index.name
        for index in found
        if not index.unique
        and index.predicate is None
        and any(other.name != index.name and serves(other, index.columns) for other in found)
    ]
    assert redundant == []
    pattern_copies = [index.name for index in found if "varchar_pattern_ops" in index.definition]
    assert pattern_copies == []  # nothing looks these ids up with LIKE 'prefix%'


@pytest.mark.parametrize(("table", "column"), LOOKUPS)
def test_every_foreign_key_lookup_is_served_by_an_index(table, column):
    assert any(serves(index, [column]) for index in indexes(table)), f"{table}.{column} has no index"
