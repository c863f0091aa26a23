"""Many SSE clients on one web process: delivery delay, memory and database connections.

Starts the real processes (one uvicorn worker, the django-q2 cluster, the fake provider streaming
CHUNKS chunks INTERVAL apart), submits TASKS stream tasks and attaches CLIENTS SSE clients spread over
them, all at once. Every client must receive every chunk in order. Records the delay from a chunk's
publication (its row's timestamp) to each client's receipt, the web process's peak memory, and the
database connections it holds: one LISTEN connection however many clients, plus its query pool.

    python bench/stream.py [--clients 500] [--tasks 10] [--chunks 50] [--interval 0.02]
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import httpx
import psycopg
from harness import RESULTS, bench_setup, bench_stack  # bench/ is on the path: scripts run as bench/*.py
from httpx_sse import aconnect_sse


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def client_run(http: httpx.AsyncClient, task_id: str, received: list) -> tuple[list[int], str]:
    """Read one stream to its end; returns the chunk ids in order and the final event."""
    ids: list[int] = []
    async with aconnect_sse(http, "GET", f"/v1/llm/generations/{task_id}/stream") as source:
        async for sse in source.aiter_sse():
            if sse.event == "chunk":
                ids.append(int(sse.id))
                received.append((task_id, int(sse.id), time.time()))
            else:
                return ids, sse.event
    return ids, "eof"


async def run(web_url: str, secret: str, args) -> tuple[list, list, list[str]]:
    limits = httpx.Limits(max_connections=args.clients + 50, max_keepalive_connections=args.clients + 50)
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=web_url, headers=headers, limits=limits, timeout=120) as http:
        body = {"model": "bench-stream", "prompt": "go", "stream": True}
        task_ids = [
            (await http.post("/v1/llm/generations", json=body)).json()["id"] for _ in range(args.tasks)
        ]
        received: list = []
        outcomes = await asyncio.gather(
            *(client_run(http, task_ids[n % args.tasks], received) for n in range(args.clients))
        )
    return outcomes, received, task_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--cluster-workers", type=int, default=10)
    parser.add_argument("--attach", type=float, default=5.0, help="seconds before the first chunk")
    parser.add_argument("--web-port", type=int, default=8101)
    parser.add_argument("--fake-port", type=int, default=8991)
    args = parser.parse_args()

    bench = bench_setup(model="bench-stream", fake_port=args.fake_port)
    from tasks.models import StreamChunk

    secret, database_url = bench.secret, bench.database_url
    stack = bench_stack(
        bench, web_port=args.web_port, fake_port=args.fake_port, cluster_workers=args.cluster_workers
    )
    peak = {"rss_mb": 0.0, "web_connections": 0, "listeners": 0}
    sampling = threading.Event()

    def sample() -> None:
        """Peak memory of the web process and the connections it holds, every 100 ms, from a thread."""
        web_pid = stack.processes["web"].pid
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not sampling.is_set():
                peak["rss_mb"] = max(peak["rss_mb"], rss_mb(web_pid))
                total, listeners = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN%%') FROM pg_stat_activity "
                    "WHERE application_name = 'foxgate-web'"
                ).fetchone()
                peak["web_connections"] = max(peak["web_connections"], total)
                peak["listeners"] = max(peak["listeners"], listeners)
                time.sleep(0.1)

    try:
        # The first chunk waits until every client is attached, so each delay is a live delivery's.
        knobs = {
            "chunk_count": args.chunks,
            "chunk_interval": args.interval,
            "time_to_first_token": args.attach,
        }
        httpx.post(f"{stack.fake_url}/_fake/config", json=knobs)
        idle_rss = rss_mb(stack.processes["web"].pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        web_cpu = cpu_seconds(stack.processes["web"].pid)
        bench_cpu = time.process_time()
        started = time.perf_counter()
        outcomes, received, task_ids = asyncio.run(run(stack.web_url, secret, args))
        elapsed = time.perf_counter() - started
        web_cpu = cpu_seconds(stack.processes["web"].pid) - web_cpu
        bench_cpu = time.process_time() - bench_cpu
        sampling.set()
        sampler.join()
        published = {
            (task_id, seq): created.timestamp()
            for task_id, seq, created in StreamChunk.objects.filter(task_id__in=task_ids).values_list(
                "task_id", "seq", "created_at"
            )
        }
    finally:
        stack.stop()

    totals = {task_id: sum(1 for t, _ in published if t == task_id) for task_id in task_ids}
    complete = sum(
        1
        for n, (ids, end) in enumerate(outcomes)
        if end == "done" and ids == list(range(totals[task_ids[n % args.tasks]]))
    )
    delays = [(at - published[(task_id, seq)]) * 1000 for task_id, seq, at in received]
    result = {
        "benchmark": "stream",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "clients": args.clients,
        "tasks": args.tasks,
        "chunks_per_task": min(totals.values()),
        "chunk_interval_ms": args.interval * 1000,
        "clients_with_every_chunk_in_order": complete,
        "chunk_deliveries": len(received),
        "publish_to_receipt_p50_ms": round(statistics.median(delays), 1),
        "publish_to_receipt_p99_ms": round(percentile(delays, 0.99), 1),
        "publish_to_receipt_max_ms": round(max(delays), 1),
        "web_process_rss_idle_mb": round(idle_rss, 1),
        "web_process_rss_peak_mb": round(peak["rss_mb"], 1),
        "web_db_connections_peak": peak["web_connections"],
        "web_listen_connections_peak": peak["listeners"],
        "wall_seconds_including_attach_wait": round(elapsed, 2),
        "web_process_cpu_seconds": round(web_cpu, 2),
        "bench_client_cpu_seconds": round(bench_cpu, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
