"""The web process's own CPU per request, measured in this process: no worker cluster, no network.

Drives foxgate.asgi.application (the ASGI app uvicorn serves) directly on a uvloop event loop, with
synthesized HTTP requests, against a throwaway embedded PostgreSQL. For sync requests, a BEFORE INSERT
trigger, installed only on that throwaway database, completes each sync task as it is inserted and
announces it as the relay's settlement would (pg_notify on the task events channel, with the outcome).
So a sync request runs the web tier's whole path: admission, the wait, the wake-up and the answer. CPU is
this process's (every thread); PostgreSQL's is another process's and is not counted. uvicorn's own HTTP
parsing is not counted either: bench/cpu_per_request.py measures the real processes.

    FOXGATE_DEBUG=0 .venv/bin/python bench/web_cpu.py [--async] [--concurrency 64] [--requests 3000]
        [--profile N]   (cProfile the measured requests, print the top N functions)
"""

import argparse
import asyncio
import atexit
import cProfile
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from cpu_per_request import top_functions
from harness import bench_setup

MODEL = "bench-model"
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
COMPLETE_SYNC_TASKS = """
CREATE OR REPLACE FUNCTION bench_complete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sync THEN
        NEW.status := 'completed';
        NEW.progress := 100;
        NEW.result := %(result)s::jsonb;
        NEW.finished_at := now();
        -- as the relay's settlement announces a sync task's end: with its outcome (tasks/events.py)
        PERFORM pg_notify(%(channel)s, NEW.id || ' end ' || json_build_object(
            'status', NEW.status, 'result', NEW.result, 'error_code', NULL::text, 'error_message', NULL::text
        ));
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS bench_complete ON tasks_task;
CREATE TRIGGER bench_complete BEFORE INSERT ON tasks_task FOR EACH ROW EXECUTE FUNCTION bench_complete();
"""


def py_spy(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling only threads that hold the GIL: where this process's CPU goes, not its waits."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [spy, "record", "--pid", str(pid), "--gil", "--format", "raw", "--output", str(out)]
    return subprocess.Popen([*argv, "--rate", "500"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def by_function(raw: Path, limit: int) -> list[str]:
    """cpu_per_request's top functions, with each function's lines summed into one."""
    summed = raw.with_suffix(".functions.txt")
    summed.write_text(re.sub(r":\d+\)(?=;| )", ")", raw.read_text()))
    return top_functions(summed, limit)


def install_completer() -> None:
    from django.db import connection

    from tasks.events import CHANNEL

    with connection.cursor() as cursor:
        cursor.execute(COMPLETE_SYNC_TASKS, {"result": json.dumps(COMPLETION), "channel": CHANNEL})


def scope_for(path: str, secret: str, body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"accept", b"*/*"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one_request(app, scope: dict, body: bytes) -> int:
    """One request through the ASGI app, as uvicorn would send it; the answer's status."""
    sent = False
    never = asyncio.Event()  # the client stays connected: Django's disconnect listener waits forever
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(app, scope: dict, body: bytes, *, concurrency: int, requests: int) -> Counter:
    statuses: Counter = Counter()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            statuses[await one_request(app, scope, body)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--async", dest="sync", action="store_false", help="async submit instead of sync")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds, each --requests long")
    parser.add_argument("--profile", type=int, default=0, help="cProfile, and print this many functions")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    parser.add_argument(
        "--py-spy", type=int, default=0, help="sample every thread holding the GIL, list this many functions"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="foxgate-webcpu-"))
    atexit.register(shutil.rmtree, data_dir, True)  # registered first, so it runs after pgserver's stop
    os.environ["FOXGATE_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("FOXGATE_LOG_LEVEL", "WARNING")
    os.environ.setdefault("FOXGATE_DB_POOL", "1")  # as foxgate/asgi.py sets it for a web server
    os.environ.setdefault("PGAPPNAME", "foxgate-web")
    bench = bench_setup(model=MODEL, fake_port=9)  # no upstream is called: no cluster runs
    install_completer()
    import uvloop

    from foxgate.asgi import application

    body = json.dumps({"model": MODEL, "prompt": "Say hello", "max_tokens": 16, "sync": args.sync})
    scope = scope_for("/v1/llm/generations", bench.secret, body.encode())

    async def measure() -> list[str]:
        report = []
        per_request: list[float] = []
        warm = await run(application, scope, body.encode(), concurrency=args.concurrency, requests=500)
        report.append(f"warm-up statuses {dict(warm)}")
        for round_ in range(args.rounds):
            profiler = cProfile.Profile() if args.profile else None
            spy = spy_out = None
            if args.py_spy:
                spy_out = data_dir / f"spy-{round_}.txt"
                spy = py_spy(os.getpid(), spy_out)
                await asyncio.sleep(1)  # py-spy attaches
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            statuses = await run(
                application, scope, body.encode(), concurrency=args.concurrency, requests=args.requests
            )
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            per_request.append(1000 * cpu / args.requests)
            report.append(
                f"round {round_}: {1000 * cpu / args.requests:.3f} ms CPU per request, "
                f"{args.requests / wall:.0f} req/s, statuses {dict(statuses)}"
            )
            if spy is not None and spy_out is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
                spy.wait()
                report += by_function(spy_out, args.py_spy) if spy_out.exists() else ["(no py-spy)"]
            if profiler:
                stats = pstats.Stats(profiler)
                stats.sort_stats(args.sort).print_stats(args.profile)
        # Other work on a shared machine only ever adds CPU time (caches, migrations): the least is the
        # best estimate of the request's own cost, the median says how steady it was.
        least, median = min(per_request), statistics.median(per_request)
        report.append(f"CPU per request: least {least:.3f} ms, median {median:.3f} ms")
        return report

    mode = "sync" if args.sync else "async submit"
    print(f"# {mode}, {args.concurrency} at once, {args.requests} requests per round, in process")
    print("\n".join(uvloop.run(measure())))


if __name__ == "__main__":
    main()
