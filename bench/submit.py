"""Submit throughput and end-to-end task throughput against the fake provider.

Starts the real processes (uvicorn, the django-q2 cluster, the fake provider) on the local database,
fires N submits at concurrency C over HTTP, then waits until the cluster has finished them all.
Records requests/s with p50/p99 submit latency, and tasks/s from first submit to last completion,
in bench/results/submit.json and .md.

    python bench/submit.py [--requests 2000] [--concurrency 32] [--web-workers 1] [--cluster-workers 4]
"""

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import time

import httpx
from harness import RESULTS, bench_setup, bench_stack  # bench/ is on the path: scripts run as bench/*.py


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def fire(url: str, secret: str, total: int, concurrency: int) -> tuple[list[float], list[str], int]:
    latencies: list[float] = []
    task_ids: list[str] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                n = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(
                    "/v1/llm/generations",
                    json={"model": "bench-model", "prompt": f"request {n}", "max_tokens": 64},
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code == 200:
                    task_ids.append(response.json()["id"])
                else:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, task_ids, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--cluster-workers", type=int, default=4)
    parser.add_argument("--web-port", type=int, default=8100)
    parser.add_argument("--fake-port", type=int, default=8990)
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    bench = bench_setup(model="bench-model", fake_port=args.fake_port)
    from tasks.models import Task

    secret, tenant = bench.secret, bench.tenant_id
    stack = bench_stack(
        bench,
        web_port=args.web_port,
        fake_port=args.fake_port,
        cluster_workers=args.cluster_workers,
        web_workers=args.web_workers,
    )
    try:
        started = time.perf_counter()
        latencies, task_ids, failures = asyncio.run(
            fire(stack.web_url, secret, args.requests, args.concurrency)
        )
        submit_seconds = time.perf_counter() - started
        finished = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            finished = Task.objects.filter(tenant_id=tenant, status__in=Task.FINISHED).count()
            if finished >= len(task_ids):
                break
            time.sleep(0.2)
        end_to_end_seconds = time.perf_counter() - started
        completed = Task.objects.filter(tenant_id=tenant, status=Task.Status.COMPLETED).count()
    finally:
        stack.stop()

    result = {
        "benchmark": "submit",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "web_workers": args.web_workers,
        "cluster_workers": args.cluster_workers,
        "submit_failures": failures,
        "submit_requests_per_second": round(len(latencies) / submit_seconds, 1),
        "submit_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "submit_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "tasks_completed": completed,
        "tasks_finished": finished,
        "end_to_end_tasks_per_second": round(finished / end_to_end_seconds, 1),
        "end_to_end_seconds": round(end_to_end_seconds, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "submit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
