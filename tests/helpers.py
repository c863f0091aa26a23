import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from io import StringIO

import httpx
from django.core.management import call_command
from django.db import connection

# A real 1x1 PNG, as a data URI.
PNG_DATA_URI = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def run_command(*args: str) -> str:
    """Run a management command in-process and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def upstream_requests(stack) -> list[dict]:
    """The chat completion requests the stack's fake provider has received."""
    received = httpx.get(f"{stack.fake_url}/_fake/requests").json()
    return [r for r in received if r["path"] == "/v1/chat/completions"]


def poll_until_finished(client: httpx.Client, task_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def database_dump() -> str:
    """Every row of every table in the database, as text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        rows = []
        for table in tables:
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - names come from pg_tables
            rows += [row[0] for row in cursor.fetchall()]
    return "\n".join(rows)


@contextmanager
def tenant_client(stack, slug: str, credits: Decimal = Decimal(10), **key_settings) -> Iterator[httpx.Client]:
    """An HTTP client of the running stack, authenticated with a new key of a new tenant."""
    from tenants.services import apikey_issue, tenant_create

    secret = apikey_issue(tenant=tenant_create(slug=slug, credits=credits), **key_settings).secret
    with httpx.Client(
        base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ) as client:
        yield client
