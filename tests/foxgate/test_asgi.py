"""The ASGI application uvicorn serves (foxgate.asgi): each request's sync code on a thread of its own,
reused by later requests rather than started for each one."""

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.signals import request_finished
from django.db import connection

import foxgate.asgi
from foxgate.asgi import application, django_application
from tasks import views
from tasks.models import Task
from tenants.authentication import key_cache
from tests.helpers import poll_until_finished

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


async def call(path: str, secret: str, *, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI application, as uvicorn would send it: the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    answered: dict[str, Any] = {"body": b""}
    connected = asyncio.Event()  # never set: the client stays until the answer is sent
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await connected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answered["status"] = message["status"]
        else:
            answered["body"] += message.get("body", b"")

    await application(scope, receive, send)
    return answered["status"], answered["body"]


def test_concurrent_requests_run_on_threads_of_their_own_that_later_requests_reuse(
    issued_key, monkeypatch
) -> None:
    key_cache.clear()
    both_inside = threading.Barrier(2, timeout=10)  # broken, so a 500, if the two shared one thread
    threads: list[int] = []
    looked_up = views.task_get

    def task_get(**kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        if len(threads) <= 2:
            both_inside.wait()
        return looked_up(**kwargs)

    monkeypatch.setattr(views, "task_get", task_get)
    path = "/v1/tasks/task-llmrouter-1-abcdefgh"

    async def scenario() -> list[tuple[int, bytes]]:
        answers = list(await asyncio.gather(call(path, issued_key.secret), call(path, issued_key.secret)))
        started = threading.active_count()
        for _ in range(5):
            answers.append(await call(path, issued_key.secret))
        assert threading.active_count() == started  # no thread started for the later requests
        return answers

    answers = asyncio.run(scenario())

    assert [status for status, _ in answers] == [404] * 7
    assert all(b'"task_not_found"' in body for _, body in answers)
    assert len(set(threads[:2])) == 2
    assert set(threads[2:]) <= set(threads[:2])


@dataclass
class Recorded:
    hops: list[list[str]] = field(default_factory=list)  # per request thread, what it was given to run
    finished: int = 0  # ends of requests Django announced (request_finished)


@pytest.fixture
def recorded(monkeypatch) -> Iterator[Recorded]:
    """Fresh request threads that record their hops, and a count of request_finished."""
    seen = Recorded()

    class Recording(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ran: list[str] = []
            seen.hops.append(self.ran)

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.ran.append(repr(fn))
            return super().submit(fn, *args, **kwargs)

    def announced(**kwargs: Any) -> None:
        seen.finished += 1

    monkeypatch.setattr(django_application, "idle", [])
    monkeypatch.setattr(foxgate.asgi, "ThreadPoolExecutor", Recording)
    request_finished.connect(announced)
    yield seen
    request_finished.disconnect(announced)


def test_an_async_submit_starts_and_ends_without_a_thread_hop_and_its_end_is_still_announced(
    issued_key, priced_model, openai_channel, recorded
) -> None:
    key_cache.clear()
    body = json.dumps({"model": "fake-model", "prompt": "hello"}).encode()

    status, answer = asyncio.run(call("/v1/llm/generations", issued_key.secret, method="POST", body=body))

    assert status == 200, answer
    assert Task.objects.filter(pk=json.loads(answer)["id"]).exists()  # pending, or taken by a running stack
    # Admission alone ran in the request's thread. Django's start and end of the request (closing the
    # thread's connections) did not, having nothing to close there: admission gave its connection back.
    # Nor did the rendering of the answer, which needs no database.
    [hops] = recorded.hops
    assert len(hops) == 1 and ".admit of" in hops[0], hops
    assert recorded.finished == 1


def test_a_poll_makes_one_thread_hop(api, issued_key, priced_model, openai_channel, recorded) -> None:
    submitted = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hello"}, format="json")
    assert submitted.status_code == 200, submitted.content
    recorded.finished = 0  # that was the test client's request, not the application's

    status, answer = asyncio.run(call(f"/v1/tasks/{submitted.json()['id']}", issued_key.secret))

    assert status == 200, answer
    assert json.loads(answer)["id"] == submitted.json()["id"]  # whether a running stack's cluster took it
    [hops] = recorded.hops
    assert len(hops) == 1 and ".lookup of" in hops[0], hops
    assert recorded.finished == 1


def test_a_request_thread_still_holding_a_connection_gives_it_back_at_the_end(issued_key, recorded) -> None:
    key_cache.clear()
    path = "/v1/account/credits"  # a view that leaves its connection open until the request ends

    async def twice() -> list[tuple[int, bytes]]:
        return [await call(path, issued_key.secret), await call(path, issued_key.secret)]

    answers = asyncio.run(twice())

    assert [status for status, _ in answers] == [200, 200]
    [thread] = django_application.idle  # the second request reused the first one's thread
    assert not thread.holds_connection()
    assert recorded.finished == 2


@pytest.mark.e2e
def test_processes_started_after_the_web_application_was_imported_keep_their_own_role(
    stack, stack_api
) -> None:
    # This module imported foxgate.asgi before the session's stack started its processes. A cluster that
    # inherited the web server's role (a connection pool, which does not survive its fork) ran nothing.
    response = stack_api.post("/v1/llm/generations", json={"model": "fake-model", "prompt": "hello"})
    assert response.status_code == 200, response.text
    task = poll_until_finished(stack_api, response.json()["id"])
    assert task["status"] == "completed", task

    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name, count(*) FROM pg_stat_activity GROUP BY 1")
        sessions = dict(cursor.fetchall())
    assert sessions.get("foxgate-cluster", 0) > 0 and sessions.get("foxgate-web", 0) > 0, sessions
    own_name = connection.connection.info.parameter_status("application_name")
    assert own_name != "foxgate-web"  # nor is this process, which only imported it, a web server
