"""Whatever the load, a web process and a worker cluster hold at most the database connections the README
("Processes") says: a burst of concurrent sync requests, streams and polled tasks against the real
processes, with every session counted in pg_stat_activity while it runs."""

import asyncio
import threading
from collections import Counter

import httpx
import psycopg
import pytest
from django.conf import settings

from foxgate.database import direct_conninfo
from tasks.models import Task

pytestmark = pytest.mark.e2e

WEB, CLUSTER = "foxgate-web", "foxgate-cluster"  # set by foxgate/asgi.py and the qcluster command


def web_process_limit() -> int:
    # Its pool (the stack sets FOXGATE_DB_POOL_SIZE to 4), its LISTEN connection, one /readyz probe.
    return 4 + 1 + 1


def cluster_limit() -> int:
    workers = settings.Q_CLUSTER["workers"]  # the stack sets FOXGATE_WORKERS=4, as this process reads it
    # Sentinel 1; pusher 3 (claims, lock renewal, LISTEN); monitor 2 (acknowledgements, failed results);
    # each worker process its relay threads, its lease thread, its chunk connections and its own thread's.
    per_worker = settings.RELAY_DB_THREADS + 1 + settings.RELAY_CHUNK_CONNECTIONS + 1
    return 1 + 3 + 2 + workers * per_worker


class SessionCounter(threading.Thread):
    """Counts the web and cluster sessions every few milliseconds on a connection of its own, keeping
    the highest count seen of each."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.highest: Counter[str] = Counter()
        self.samples = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(**direct_conninfo(), autocommit=True) as conn:
            while not self.stopped.wait(0.01):
                rows = conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity"
                    " WHERE application_name = ANY(%s) GROUP BY 1",
                    [[WEB, CLUSTER]],
                ).fetchall()
                for name, count in rows:
                    self.highest[name] = max(self.highest[name], count)
                self.samples += 1


async def burst(url: str, headers: dict[str, str], each: int) -> list[str]:
    """`each` sync requests, `each` streams and `each` polled tasks, all at once; the task ids."""
    body = {"model": "fake-model", "prompt": "hello"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

        async def sync() -> str:
            response = await client.post("/v1/llm/generations", json={**body, "sync": True})
            assert response.status_code == 200, response.text
            return response.headers["X-Task-Id"]

        async def stream() -> str:
            request = {**body, "sync": True, "stream": True}
            async with client.stream("POST", "/v1/llm/generations", json=request) as response:
                assert response.status_code == 200
                events = [line async for line in response.aiter_lines() if line.startswith("event:")]
            assert events[0] == "event: chunk" and events[-1] == "event: done", events
            return response.headers["X-Task-Id"]

        async def polled() -> str:
            response = await client.post("/v1/llm/generations", json=body)
            assert response.status_code == 200, response.text
            task_id = response.json()["id"]
            while (await client.get(f"/v1/tasks/{task_id}")).json()["status"] not in ("completed", "failed"):
                await asyncio.sleep(0.1)
            return task_id

        calls = [call() for call in (sync, stream, polled) for _ in range(each)]
        return await asyncio.gather(*calls)


def test_a_burst_of_sync_requests_and_streams_stays_within_the_documented_connections(stack, stack_api):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 0.5})  # so they are all open at once
    counter = SessionCounter()
    counter.start()
    try:
        task_ids = asyncio.run(burst(stack.web_url, dict(stack_api.headers), each=60))
    finally:
        counter.stopped.set()
        counter.join()

    assert Task.objects.filter(id__in=task_ids, status="completed").count() == len(task_ids) == 180
    assert counter.samples > 10, "the burst ended before its connections were counted"
    web_processes = len(stack.web_urls) * stack.web_workers
    assert 0 < counter.highest[WEB] <= web_processes * web_process_limit(), counter.highest
    assert 0 < counter.highest[CLUSTER] <= cluster_limit(), counter.highest
