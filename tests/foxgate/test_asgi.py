"""The ASGI application uvicorn serves (foxgate.asgi): each request's sync code on a thread of its own,
reused by later requests rather than started for each one."""

import asyncio
import threading
from typing import Any

import pytest
from django.db import connection

from foxgate.asgi import application
from tasks import views
from tenants.authentication import key_cache
from tests.helpers import poll_until_finished

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


async def get(path: str, secret: str) -> tuple[int, bytes]:
    """One GET through the ASGI application, as uvicorn would send it: the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {secret}".encode())],
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
            return {"type": "http.request", "body": b"", "more_body": False}
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
        answers = list(await asyncio.gather(get(path, issued_key.secret), get(path, issued_key.secret)))
        started = threading.active_count()
        for _ in range(5):
            answers.append(await get(path, issued_key.secret))
        assert threading.active_count() == started  # no thread started for the later requests
        return answers

    answers = asyncio.run(scenario())

    assert [status for status, _ in answers] == [404] * 7
    assert all(b'"task_not_found"' in body for _, body in answers)
    assert len(set(threads[:2])) == 2
    assert set(threads[2:]) <= set(threads[:2])


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
