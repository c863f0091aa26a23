"""Dispatch latency: how long a submitted task waits before a worker starts it, when one has room.

Starts the real processes (uvicorn, the django-q2 cluster, the fake provider) on the local database and
submits async tasks over HTTP one at a time, each once the previous one finished, so every submit finds
an idle cluster (waiting on its queue, where polling delay would show). For each task it records
`started_at - created_at` from the task row: created_at is stamped inside the admission transaction just
before the commit, so this is the commit-to-start delay plus the rest of that transaction (an upper
bound). Writes bench/results/dispatch.json, one entry per broker class measured (rerunning replaces the
entry for the broker in Q_CLUSTER).

Then the broker alone, in this process: a thread dequeues (as django-q2's pusher does) while the main
thread enqueues one job per transaction; the delay from each commit to its job coming out of `dequeue`,
for FoxGate's broker and for django-q2's ORM broker at the same `poll`.

    python bench/dispatch.py [--tasks 200] [--cluster-workers 4]
"""

import argparse
import json
import logging
import os
import platform
import statistics
import threading
import time

import httpx
from harness import RESULTS, bench_setup, bench_stack  # bench/ is on the path: scripts run as bench/*.py


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def broker_alone(broker_class: type, jobs: int) -> dict[str, float]:
    """Milliseconds from an enqueue's commit to its job coming out of a dequeuing thread."""
    from django.db import connections, transaction

    key = f"dispatch-bench-{broker_class.__name__}"
    arrived: dict[str, float] = {}
    arrival = threading.Event()
    done = threading.Event()

    def dequeue() -> None:
        broker = broker_class(key)
        while not done.is_set():
            for row_id, payload in broker.dequeue() or []:
                arrived[payload] = time.perf_counter()
                broker.acknowledge(row_id)
                arrival.set()
        getattr(broker, "close", lambda: None)()
        connections.close_all()

    puller = threading.Thread(target=dequeue)
    puller.start()
    delays = []
    try:
        for n in range(jobs):
            arrival.clear()
            with transaction.atomic():
                broker_class(key).enqueue(str(n))
            committed = time.perf_counter()
            if not arrival.wait(30):
                raise SystemExit(f"{broker_class.__name__} did not deliver a job within 30 s")
            delays.append((arrived[str(n)] - committed) * 1000)
    finally:
        done.set()
        broker_class(key).enqueue("last")  # wakes the puller at once, whichever broker it is
        puller.join()
        broker_class(key).purge_queue()
    return summary(delays)


def summary(delays: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(delays), 2),
        "p90": round(percentile(delays, 0.90), 2),
        "p99": round(percentile(delays, 0.99), 2),
        "max": round(max(delays), 2),
        "mean": round(statistics.fmean(delays), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--cluster-workers", type=int, default=4)
    parser.add_argument("--web-port", type=int, default=8102)
    parser.add_argument("--fake-port", type=int, default=8992)
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    bench = bench_setup(model="bench-model", fake_port=args.fake_port)
    from django.conf import settings

    from tasks.models import Task

    stack = bench_stack(
        bench, web_port=args.web_port, fake_port=args.fake_port, cluster_workers=args.cluster_workers
    )
    task_ids: list[str] = []
    try:
        with httpx.Client(
            base_url=stack.web_url, headers={"Authorization": f"Bearer {bench.secret}"}, timeout=30
        ) as client:
            for n in range(args.tasks + 5):  # the first five warm the processes up and are not counted
                response = client.post(
                    "/v1/llm/generations",
                    json={"model": "bench-model", "prompt": f"task {n}", "max_tokens": 8},
                )
                response.raise_for_status()
                task_id = response.json()["id"]
                deadline = time.monotonic() + 60
                while not Task.objects.filter(pk=task_id, status__in=Task.FINISHED).exists():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"task {task_id} did not finish within 60 s")
                    time.sleep(0.002)
                if n >= 5:
                    task_ids.append(task_id)
    finally:
        stack.stop()

    rows = Task.objects.filter(pk__in=task_ids).values_list("created_at", "started_at")
    delays = [(started - created).total_seconds() * 1000 for created, started in rows]
    broker = settings.Q_CLUSTER["broker_class"]
    entry = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "broker_class": broker,
        "poll_seconds": settings.Q_CLUSTER.get("poll"),
        "cluster_workers": args.cluster_workers,
        "tasks": len(delays),
        "created_to_started_ms": summary(delays),
    }
    from django_q.brokers.orm import ORM

    from foxgate.broker import PostgresBroker

    entry["broker_alone_commit_to_dequeued_ms"] = {
        "foxgate.broker.PostgresBroker": broker_alone(PostgresBroker, args.tasks),
        "django_q.brokers.orm.ORM": broker_alone(ORM, args.tasks),
    }
    path = RESULTS / "dispatch.json"
    results = json.loads(path.read_text()) if path.exists() else {"benchmark": "dispatch", "runs": {}}
    results["runs"][broker] = entry
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
