"""1,000 async tasks on a slow upstream: how many the cluster holds in flight at once, and how long the
last one takes, with the cluster's memory.

Starts the real processes on the local database, sets the fake provider's latency, fires the submits at
concurrency 64, and samples every 0.1 s how many of them are `processing` and the RSS of the worker
cluster (every process of its group). Writes bench/results/engine_burst.json.

    python bench/engine_burst.py [--tasks 1000] [--latency 2] [--cluster-workers 4]
"""

import argparse
import asyncio
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path

import httpx
from harness import RESULTS, bench_setup, bench_stack  # bench/ is on the path: scripts run as bench/*.py


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the process group, in MB."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat, the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24, rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return round(total / 1e6, 1)


async def submit_all(url: str, secret: str, total: int, concurrency: int) -> tuple[list[str], int]:
    """Submit `total` tasks from `concurrency` clients; a refused or dropped submit counts as a failure."""
    ids: list[str] = []
    failures = 0
    remaining = iter(range(total))
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ) as client:

        async def one_client() -> None:
            nonlocal failures
            for n in remaining:
                try:
                    response = await client.post(
                        "/v1/llm/generations",
                        json={"model": "bench-model", "prompt": f"task {n}", "max_tokens": 64},
                    )
                except httpx.TransportError:
                    failures += 1
                    continue
                if response.status_code == 200:
                    ids.append(response.json()["id"])
                else:
                    failures += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return ids, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=2)
    parser.add_argument("--cluster-workers", type=int, default=4)
    parser.add_argument("--web-port", type=int, default=8110)
    parser.add_argument("--fake-port", type=int, default=8991)
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    bench = bench_setup(model="bench-model", fake_port=args.fake_port)
    from tasks.models import Task

    stack = bench_stack(
        bench, web_port=args.web_port, fake_port=args.fake_port, cluster_workers=args.cluster_workers
    )
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": args.latency})
    cluster = stack.processes["worker cluster"].pid
    samples: list[tuple[float, int, float]] = []
    done = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            processing = Task.objects.filter(tenant_id=bench.tenant_id, status="processing").count()
            samples.append((time.perf_counter() - started, processing, group_rss_mb(cluster)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        task_ids, failures = asyncio.run(submit_all(stack.web_url, bench.secret, args.tasks, 64))
        submitted = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            finished = Task.objects.filter(tenant_id=bench.tenant_id, status__in=Task.FINISHED).count()
            if finished >= len(task_ids):
                break
            time.sleep(0.05)
        last_finished = time.perf_counter() - started
        completed = Task.objects.filter(tenant_id=bench.tenant_id, status="completed").count()
    finally:
        done.set()
        sampler.join()
        stack.stop()
    result = {
        "benchmark": "engine_burst",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "tasks": args.tasks,
        "upstream_latency_s": args.latency,
        "cluster_workers": args.cluster_workers,
        "submit_failures": failures,
        "submitted_after_s": round(submitted, 2),
        "completed": completed,
        "last_finished_after_s": round(last_finished, 2),
        "peak_processing": max(p for _, p, _ in samples),
        "peak_cluster_rss_mb": max(r for _, _, r in samples),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_burst.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
