import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from io import StringIO

import httpx
from django.core.management import call_command
from django.db import connection

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.gemini import FakeGemini

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
        if task["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
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


def embedding_model(stack, name: str = "fake-embedding") -> None:
    """An embedding model on the stack's OpenAI-compatible fake, at 1 credit per million input tokens."""
    from tasks.models import Model
    from tasks.services import channel_add, price_set

    price_set(
        model_name=name,
        input_per_million=Decimal(1),
        output_per_million=Decimal(0),
        kind=Model.Kind.EMBEDDING,
    )
    channel_add(
        name=f"{name} channel",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=[name],
    )


@contextmanager
def anthropic_and_gemini_channels(
    *, output_per_million: Decimal = Decimal(1)
) -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    """Fake Anthropic and Gemini servers, and channels on them: claude-sonnet-4 (claude-sonnet-4-20250514
    upstream) and gemini-2.5-flash, priced at 1 credit per million input tokens and `output_per_million`
    per million output tokens."""
    from tasks.services import channel_add, price_set

    with FakeAnthropic(api_key="sk-ant-test") as anthropic, FakeGemini(api_key="AIza-test") as gemini:
        for name in ("claude-sonnet-4", "gemini-2.5-flash"):
            price_set(model_name=name, input_per_million=Decimal(1), output_per_million=output_per_million)
        channel_add(
            name="anthropic",
            provider="anthropic",
            base_url=anthropic.base_url,
            api_key="sk-ant-test",
            model_names=["claude-sonnet-4"],
            model_mapping={"claude-sonnet-4": "claude-sonnet-4-20250514"},
        )
        channel_add(
            name="gemini",
            provider="gemini",
            base_url=gemini.base_url,
            api_key="AIza-test",
            model_names=["gemini-2.5-flash"],
        )
        yield anthropic, gemini
