import os
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection, connections
from playwright.sync_api import Browser, sync_playwright
from psycopg.conninfo import make_conninfo
from rest_framework.test import APIClient

from foxgate.database import direct_conninfo
from foxgate.stack import Stack
from tasks.models import Model
from tasks.services import channel_add, price_set
from tenants.services import IssuedKey, apikey_issue, tenant_create
from tests.helpers import tenant_client
from tests.webhooks import Tls, tls_files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What a test run that finds its test database taken says, before it touches that database.
TEST_DATABASE_TAKEN = "another test run is using the test database"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """One test run per test database at a time. Two runs on one server (two `./dev test` in one
    checkout) share `test_foxgate`: each one's flushes and committed rows land in the other's tests,
    and its worker cluster takes the other's jobs (bench/results/prepare.md). The run holds a session
    advisory lock while it lasts (the server lets go of it if the run dies); a second run stops here,
    before Django would drop and recreate the database under the first."""
    name = connection.settings_dict["TEST"]["NAME"]
    with psycopg.connect(**direct_conninfo(), autocommit=True) as lock:
        taken = lock.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"foxgate-test-run:{name}"])
        if not taken.fetchone()[0]:
            pytest.exit(f"{TEST_DATABASE_TAKEN} {name} on this server: wait for it to end")
        yield


@pytest.fixture
def tenant(db):
    return tenant_create(slug="acme", name="Acme", credits=Decimal(100))


@pytest.fixture
def issued_key(tenant) -> IssuedKey:
    return apikey_issue(tenant=tenant, name="ci")


@pytest.fixture
def outsider_key(db) -> IssuedKey:
    """A key of another tenant: it must never see the first tenant's data."""
    other = tenant_create(slug="globex", name="Globex", credits=Decimal(100))
    return apikey_issue(tenant=other, name="outsider")


@pytest.fixture
def api(issued_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued_key.secret}")
    return client


@pytest.fixture
def priced_model(db):
    """`fake-model`, priced at 1 credit per million input tokens and 2 per million output tokens."""
    return price_set(
        model_name="fake-model", input_per_million=Decimal(1), output_per_million=Decimal(2)
    ).model


@pytest.fixture
def fake_openai():
    from foxgate.fakes.openai import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def openai_channel(priced_model, fake_openai):
    return channel_add(
        name="fake",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="",
        model_names=[priced_model.name],
    )


@pytest.fixture(scope="session")
def webhook_tls(tmp_path_factory) -> Tls:
    """The certificates of the tests' local HTTPS webhook receivers (tests/webhooks.py)."""
    return tls_files(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
def private_webhooks(settings, webhook_tls) -> Tls:
    """This process may send webhooks to 127.0.0.1, over TLS the tests' CA signed, as the stack's worker
    cluster is told to (FOXGATE_ALLOW_PRIVATE_WEBHOOKS, FOXGATE_WEBHOOK_CA_BUNDLE)."""
    settings.ALLOW_PRIVATE_WEBHOOKS = True
    settings.WEBHOOK_CA_BUNDLE = str(webhook_tls.ca)
    return webhook_tls


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory, webhook_tls):
    """The real processes: two web servers (uvicorn serving foxgate.asgi; the first with two workers),
    the django-q2 cluster and the fake provider, all on the test database. Tests use it through
    `stack_db`, so their rows are committed where the other processes can see them."""
    with django_db_blocker.unblock():
        db = connection.settings_dict
        database_url = make_conninfo(
            dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
        )
    log_dir = Path(tmp_path_factory.mktemp("stack-logs"))
    running = Stack(
        web_port=free_port(),
        extra_web_ports=(free_port(),),
        fake_port=free_port(),
        env={
            "DATABASE_URL": database_url,
            "FOXGATE_WORKERS": "4",
            "FOXGATE_BREAKER_COOLDOWN_SECONDS": "2",
            "FOXGATE_STREAM_KEEPALIVE_SECONDS": "1",
            # a small pool, so a request that holds its connection while it waits shows up in tests
            "FOXGATE_DB_POOL_SIZE": "4",
            # alerts reach the tests' receivers on 127.0.0.1, and their emails a folder
            "FOXGATE_ALLOW_PRIVATE_WEBHOOKS": "1",
            "FOXGATE_WEBHOOK_CA_BUNDLE": str(webhook_tls.ca),
            "FOXGATE_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "FOXGATE_EMAIL_FILE_PATH": str(log_dir / "emails"),
        },
        web_workers=2,
        log_dir=log_dir,
    ).start()
    yield running
    running.stop()


@pytest.fixture
def stack_db(stack, transactional_db):
    """The database as the stack's processes see it (committed rows), for one test.

    At the end, waits until the cluster has finished every task it was given: pytest-django then
    empties the tables with TRUNCATE, and a task still settling in a worker would deadlock with it."""
    yield
    from django_q.models import OrmQ

    from tasks.models import Task

    deadline = time.monotonic() + 60
    while Task.objects.filter(status__in=Task.UNFINISHED).exists() or OrmQ.objects.exists():
        assert time.monotonic() < deadline, "the worker cluster did not finish its tasks within 60 s"
        time.sleep(0.05)


@pytest.fixture
def stack_api(stack, stack_db):
    """An HTTP client of the running stack, with a key of a tenant holding 10 credits, and
    `fake-model` (every capability) served by the stack's fake provider, whose record is emptied."""
    price_set(
        model_name="fake-model",
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
        capabilities=list(Model.Capability.values),
    )
    channel_add(
        name="fake",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=["fake-model"],
    )
    httpx.post(f"{stack.fake_url}/_fake/reset")
    httpx.delete(f"{stack.fake_url}/_fake/requests")
    with tenant_client(stack, "e2e") as client:
        yield client


@pytest.fixture(autouse=True)
def every_result_is_a_chat_completion(request):
    """After each test that used the database, every completed task's result must be a ChatCompletion
    that the official openai package accepts: the API promises OpenAI's shape whatever the provider."""
    yield
    if "_django_db_helper" not in request.fixturenames:
        return
    from openai.types.chat import ChatCompletion

    from tasks.models import Task
    from tasks.retention import unsealed

    with request.getfixturevalue("django_db_blocker").unblock():
        for result in Task.objects.filter(status=Task.Status.COMPLETED).values_list("result", flat=True):
            ChatCompletion.model_validate(unsealed(result))


@pytest.fixture(autouse=True)
def forget_cached_keys():
    """Each test starts with this process's key cache empty, as a fresh process would."""
    from tenants.authentication import key_cache

    key_cache.clear()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the whole test module (the admin's browser tests).

    Playwright's sync API keeps an asyncio loop marked as running on this thread while it is started,
    which trips Django's guard against ORM calls from async code; nothing here is async (Playwright
    runs its loop in a greenlet), so the guard is lifted for this module only. While the loop runs,
    Django also keeps its connections apart from the thread's usual ones, so they are closed here,
    before the loop stops, or the test database could not be dropped at the end."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
            connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
