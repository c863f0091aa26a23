"""Where the web process spends a request: one async submit and one sync request, profiled.

Starts the real processes (one uvicorn worker, the worker cluster, the fake provider answering at once)
on the local database, then for each of the two requests:
- counts the SQL statements one request makes (in this process, through Django's test client, the key
  already cached: what a busy key pays per request);
- measures ms per request at 1 connection and requests/s at 64 connections (an httpx asyncio client);
- samples the uvicorn process with py-spy during the 64-connection run and lists the functions it was
  in most often (own time and inclusive time).
The web process is pinned to core 0 and this load generator to core 1. Writes a text report.

    .venv/bin/python bench/profile_web.py --out bench/results/profile_after.txt [--seconds 10]
"""

import argparse
import asyncio
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import RESULTS, bench_setup, bench_stack  # bench/ is on the path: scripts run as bench/*.py

MODEL = "bench-model"
BODIES = {
    "async submit": {"model": MODEL, "prompt": "profile me", "max_tokens": 16},
    "sync request": {"model": MODEL, "prompt": "profile me", "max_tokens": 16, "sync": True},
}


async def load(url: str, secret: str, body: dict, connections: int, seconds: float) -> dict:
    """Keep `connections` requests in flight for `seconds`; count answers by status."""
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, limits=limits, timeout=120
    ) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post("/v1/llm/generations", json=body)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "statuses": dict(statuses),
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    }


def statements(secret: str, body: dict) -> list[str]:
    """The SQL one request runs in the web tier, the key's lookup already cached."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.post("/v1/llm/generations", body, content_type="application/json")  # warms the caches
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/v1/llm/generations", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return [query["sql"] for query in captured.captured_queries]


def top_functions(raw: Path, count: int = 25) -> str:
    """py-spy's collapsed stacks ("frame;frame;frame N"), summed per function: own and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1] for frame in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples"]
    lines.append("  own%  function")
    lines += [f"{100 * n / total:6.1f}  {frame}" for frame, n in own.most_common(count)]
    lines.append("  incl%  function")
    lines += [f"{100 * n / total:6.1f}  {frame}" for frame, n in inclusive.most_common(count)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "profile.txt")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--web-port", type=int, default=8140)
    parser.add_argument("--fake-port", type=int, default=8991)
    args = parser.parse_args()

    bench = bench_setup(model=MODEL, fake_port=args.fake_port)
    stack = bench_stack(bench, web_port=args.web_port, fake_port=args.fake_port, cluster_workers=4)
    web_pid = stack.processes["web"].pid
    report = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {os.cpu_count()} cores, "
        f"web pinned to core 0, load generator to core 1 (both cores shared with other work)",
        f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    try:
        for thread in Path(f"/proc/{web_pid}/task").iterdir():  # every thread of the web process
            os.sched_setaffinity(int(thread.name), {0})
        os.sched_setaffinity(0, {1})
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for name, body in BODIES.items():
            queries = statements(bench.secret, body)
            report += ["", f"## {name}", f"SQL statements per request (web tier): {len(queries)}"]
            report += [f"  {sql[:150]}" for sql in queries]
            single = asyncio.run(load(stack.web_url, bench.secret, body, 1, args.seconds / 2))
            report.append(
                f"1 connection: {single['p50_ms']:.1f} ms p50, {single['p99_ms']:.1f} ms p99, "
                f"{single['req_per_s']:.1f} req/s, statuses {single['statuses']}"
            )
            with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
                spy = subprocess.Popen(  # noqa: S603 - our own py-spy, arguments we built
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(web_pid),
                        "--duration",
                        str(int(args.seconds)),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--output",
                        raw.name,
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                busy = asyncio.run(load(stack.web_url, bench.secret, body, args.connections, args.seconds))
                _, spy_errors = spy.communicate(timeout=60)
                report.append(
                    f"{args.connections} connections: {busy['req_per_s']:.1f} req/s, "
                    f"{busy['p50_ms']:.1f} ms p50, {busy['p99_ms']:.1f} ms p99, statuses {busy['statuses']}"
                )
                report.append(f"py-spy of the web process during the {args.connections}-connection run:")
                if spy.returncode == 0:
                    report.append(top_functions(Path(raw.name)))
                else:
                    report.append(f"py-spy failed: {spy_errors.decode()[-500:]}")
    finally:
        stack.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
