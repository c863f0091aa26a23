"""FoxGate, the LiteLLM proxy and the upstream itself, measured side by side in one run (issue 11).

Starts a fake OpenAI upstream, FoxGate (one uvicorn worker and one worker cluster, default settings, a
tenant, key and channel on the fake) and, when its virtualenv exists, the LiteLLM proxy (one worker,
model gpt-4o-mini routed to the fake through `api_base`). The gateways and PostgreSQL are bound to core 0;
this load generator and the fake to core 1 (the equivalent of `taskset -c`, applied to every thread of
each process tree, so workers forked later inherit it). All traffic stays on 127.0.0.1.

Scenarios, each a closed loop of N connections for --seconds, then at most --grace more for the answers
in flight (so each takes at most 20 s by default):

- sync mode (a ChatCompletion per request) at 0 ms x 1, 0 ms x 64, 100 ms x 64 and 2 s x 256, against
  the upstream directly, LiteLLM and FoxGate;
- async submit at 0 ms x 64 (FoxGate only: the POST answers with the task);
- 1,000 async tasks on a 2 s upstream, from the first submit to the last final task, with the peak
  number `processing` at once read from the tasks table;
- peak memory of FoxGate's web and cluster process trees and of LiteLLM's, sampled throughout.

Results go to bench/results/side_by_side.json (one entry per --label, earlier labels kept) and
bench/results/side_by_side.md (a table per label).

    .venv/bin/python bench/side_by_side.py --install-litellm   # once: LiteLLM into .foxgate/litellm-venv
    .venv/bin/python bench/side_by_side.py --label baseline
"""

import argparse
import asyncio
import atexit
import collections
import contextlib
import itertools
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from harness import RESULTS, ROOT, bench_setup, bench_stack_default, pin, tree_memory

MODEL = "gpt-4o-mini"
LITELLM_VERSION = "1.108.7"
LITELLM_VENV = ROOT / ".foxgate" / "litellm-venv"  # under .foxgate/, which git ignores
GATEWAY_CORE, LOAD_CORE = 0, 1
SYNC_SCENARIOS = [(0.0, 1), (0.0, 64), (0.1, 64), (2.0, 256)]  # upstream delay in seconds, connections
CHAT_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
GENERATION_BODY = {"model": MODEL, "prompt": "Say hello", "max_tokens": 16}
LOG_DIR = ROOT / ".foxgate" / "bench-logs"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the load generator ---------------------------------------------------------------------------


async def closed_loop(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    grace: float,
    answered: Callable[[dict[str, Any]], bool],
    rate: float = 0,
) -> dict[str, Any]:
    """`connections` clients each sending the next request as soon as the last one is answered.

    With `rate`, the requests leave on a fixed schedule of that many per second instead (each client
    takes the next slot when it is free): a load the gateway can keep up with costs each process the
    CPU its own work takes, where a saturated core is shared out by the scheduler whatever the work.

    Requests/s counts the good answers that arrived within `seconds`; latencies cover every good answer,
    including those that arrive in the grace period. Answers still missing after the grace period count
    as errors ("unanswered"), as do non-200 answers and transport errors."""
    content = json.dumps(body).encode()
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    in_window = 0
    in_flight = 0
    # A client per connection, not one pool of N: httpx's shared pool costs more CPU per request the more
    # connections it holds (measured on this machine, direct at 0 ms x 64: 34 req/s through one pool,
    # 90 req/s with a client each), and the load generator must not be what is measured.
    # Connecting may queue behind the other connections' handshakes; the grace period bounds it all.
    timeout = httpx.Timeout(seconds + grace, pool=None)
    tls = ssl.create_default_context()  # unused on http://, but made once instead of once per client
    clients = [
        httpx.AsyncClient(
            headers={**headers, "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=timeout,
            verify=tls,
        )
        for _ in range(connections)
    ]
    start = time.perf_counter()
    end = start + seconds
    slots = itertools.count()

    async def connection(client: httpx.AsyncClient) -> None:
        nonlocal in_window, in_flight
        while time.perf_counter() < end:
            if rate:
                await asyncio.sleep(start + next(slots) / rate - time.perf_counter())
                if time.perf_counter() >= end:
                    break
            sent = time.perf_counter()
            in_flight += 1
            try:
                response = await client.post(url, content=content)
                ok = response.status_code == 200 and answered(response.json())
                kind = "bad answer" if response.status_code == 200 else str(response.status_code)
            except (httpx.HTTPError, ValueError) as error:
                ok, kind = False, type(error).__name__
            finally:
                in_flight -= 1
            received = time.perf_counter()
            if ok:
                latencies.append(received - sent)
                in_window += received <= end
            else:
                errors[kind] += 1

    loops = [asyncio.create_task(connection(client)) for client in clients]
    _, unanswered = await asyncio.wait(loops, timeout=seconds + grace)
    missing = in_flight
    for loop in unanswered:
        loop.cancel()
    await asyncio.gather(*unanswered, return_exceptions=True)
    if missing:
        errors["unanswered"] += missing
    await asyncio.gather(*(client.aclose() for client in clients))
    return {
        "connections": connections,
        "seconds": seconds,
        "requests_per_second": round(in_window / seconds, 1),
        "answered": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


def is_completion(payload: dict[str, Any]) -> bool:
    return bool(payload.get("choices"))


def is_task(payload: dict[str, Any]) -> bool:
    return str(payload.get("id", "")).startswith("task-")


# --- the processes --------------------------------------------------------------------------------


def serve_fake(port: int) -> None:
    """Run the bundled fake OpenAI upstream in this process until SIGINT/SIGTERM."""
    sys.path.insert(0, str(ROOT))
    from foxgate.fakes.openai import FakeOpenAI
    from foxgate.fakes.server import serve_forever

    server = FakeOpenAI(port=port)
    # socketserver listens with a backlog of 5: hundreds of clients connecting at once would see SYNs
    # dropped and retried a second later, a delay of the fake, not of the gateway under test.
    server._httpd.socket.listen(4096)
    serve_forever(server)  # stop() ends it with SIGINT


def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"side-by-side-{name}.log", "ab") as log:
        return subprocess.Popen(  # noqa: S603
            argv,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches what it forks
        )


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers outliving their parent
    process.wait()


def wait_until_up(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited during startup (see {LOG_DIR})")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def install_litellm() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)  # noqa: S603
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"]
    subprocess.run(pip, check=True)  # noqa: S603


def start_litellm(port: int, fake_port: int, config_dir: Path, master_key: str) -> subprocess.Popen:
    config = config_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{fake_port}/v1\n"
        "      api_key: sk-fake\n"
        # The proxy refuses to start unauthenticated; a master key needs no database.
        f"general_settings:\n  master_key: {master_key}\n"
    )
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    # Offline, the proxy would try to download its model price list at start.
    process = spawn("litellm", argv, {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
    wait_until_up(f"http://127.0.0.1:{port}/health/liveliness", process, timeout=180)
    return process


class MemorySampler(threading.Thread):
    """Peak RSS and PSS of each named process tree, sampled every half second while the run lasts."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak: dict[str, dict[str, int]] = {name: {"rss": 0, "pss": 0} for name in roots}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for name, pid in self.roots.items():
            rss, pss = tree_memory(pid)
            peak = self.peak[name]
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)

    def megabytes(self) -> dict[str, dict[str, float]]:
        return {
            name: {kind: round(value / 2**20, 1) for kind, value in peak.items()}
            for name, peak in self.peak.items()
        }


# --- the run --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(  # noqa: S603
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(  # noqa: S603
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
        capture_output=True,
        text=True,
    ).stdout.strip()
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "foxgate_commit": commit + ("+uncommitted" if dirty else ""),
        # Other work on the machine competes for the same two cores: say how much there was.
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }


def litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True)  # noqa: S603
    return found.stdout.strip() or None


def set_latency(fake_url: str, seconds: float) -> None:
    httpx.post(f"{fake_url}/_fake/config", json={"latency": seconds}, timeout=5).raise_for_status()
    # The fake records every request; forget them so its memory and lock stay small.
    httpx.delete(f"{fake_url}/_fake/requests", timeout=30).raise_for_status()


def unfinished(tenant_id: int) -> int:
    from tasks.models import Task

    return Task.objects.filter(tenant_id=tenant_id, status__in=Task.UNFINISHED).count()


def drain(tenant_id: int, limit: float) -> int:
    """Wait up to `limit` seconds for the tenant's tasks to be final; how many were still not."""
    deadline = time.monotonic() + limit
    left = unfinished(tenant_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = unfinished(tenant_id)
    return left


def end_to_end(web_url: str, secret: str, tenant_id: int, *, tasks: int, deadline: float) -> dict[str, Any]:
    """Submit `tasks` async generations over 64 connections; follow them in the tasks table until all
    are final or `deadline` seconds after the first submit."""
    from django.db import connection
    from django.db.models import Count, Max

    from tasks.models import Task

    peak = {"processing": 0}
    done = threading.Event()

    def watch() -> None:
        # Its own database connection, closed when done: the ORM gives each thread one.
        try:
            while not done.wait(0.05):
                counts = dict(
                    Task.objects.filter(tenant_id=tenant_id)
                    .order_by()
                    .values("status")
                    .annotate(n=Count("id"))
                    .values_list("status", "n")
                )
                peak["processing"] = max(peak["processing"], counts.get(Task.Status.PROCESSING, 0))
        finally:
            connection.close()

    async def submit() -> tuple[int, int]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(tasks):
            queue.put_nowait(n)
        accepted = failed = 0
        tls = ssl.create_default_context()
        # A client per connection, as in closed_loop: one shared pool would slow the submitter itself.
        clients = [
            httpx.AsyncClient(
                base_url=web_url,
                headers={"Authorization": f"Bearer {secret}"},
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=deadline,
                verify=tls,
            )
            for _ in range(64)
        ]

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal accepted, failed
            while not queue.empty():
                n = queue.get_nowait()
                try:
                    response = await client.post(
                        "/v1/llm/generations", json={**GENERATION_BODY, "prompt": f"caption {n}"}
                    )
                    accepted += response.status_code == 200
                    failed += response.status_code != 200
                except httpx.HTTPError:
                    failed += 1

        workers = [asyncio.create_task(worker(client)) for client in clients]
        _, late = await asyncio.wait(workers, timeout=deadline)
        for task in late:  # past the deadline: stop submitting
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        await asyncio.gather(*(client.aclose() for client in clients))
        return accepted, failed

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first_submit = time.time()
    started = time.monotonic()
    accepted, failed = asyncio.run(submit())
    submit_seconds = time.monotonic() - started
    while time.monotonic() - started < deadline and unfinished(tenant_id):
        time.sleep(0.05)
    done.set()
    watcher.join()
    own = Task.objects.filter(tenant_id=tenant_id)
    final = own.filter(status__in=Task.FINISHED)
    last = final.aggregate(last=Max("finished_at"))["last"]
    return {
        "tasks": tasks,
        "submitted": accepted,
        "submit_errors": failed,
        "submit_seconds": round(submit_seconds, 2),
        "completed": own.filter(status=Task.Status.COMPLETED).count(),
        "failed": own.filter(status=Task.Status.FAILED).count(),
        "final_within_deadline": final.count(),
        "deadline_seconds": deadline,
        "seconds_to_last_final": round(last.timestamp() - first_submit, 2) if last else None,
        "peak_processing": peak["processing"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    # A database of its own, made fresh: no backlog left by an earlier run or another benchmark.
    data_dir = Path(tempfile.mkdtemp(prefix="foxgate-side-by-side-"))
    atexit.register(shutil.rmtree, data_dir, True)  # registered first, so it runs after pgserver's stop
    os.environ["FOXGATE_DATA_DIR"] = str(data_dir)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    fake_url = f"http://127.0.0.1:{args.fake_port}"
    fake = spawn("fake", [sys.executable, str(Path(__file__).resolve()), "--serve-fake", str(args.fake_port)])
    processes = [fake]
    stack = None
    try:
        wait_until_up(f"{fake_url}/_fake/requests", fake, timeout=30)
        bench = bench_setup(model=MODEL, fake_port=args.fake_port)
        from django.db import connection

        from tenants.services import apikey_issue, tenant_create

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            postgres = cursor.fetchone()[0]
        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        # The Stack's own fake provider stays idle: the channel points at ours, listening wider.
        stack = bench_stack_default(bench, web_port=args.web_port, fake_port=args.stack_fake_port)
        litellm = None
        litellm_key = f"sk-{secrets.token_hex(32)}"
        if args.no_litellm:
            notes.append("LiteLLM skipped (--no-litellm).")
        elif not (LITELLM_VENV / "bin" / "litellm").exists():
            notes.append(f"LiteLLM skipped: not installed in {LITELLM_VENV} (run with --install-litellm).")
        else:
            litellm = start_litellm(args.litellm_port, args.fake_port, data_dir, litellm_key)
            processes.append(litellm)

        def pin_all() -> None:
            """Gateways and database on one core, load and upstream on the other (again before every
            scenario, so processes forked since are bound too)."""
            if (os.cpu_count() or 1) < 2:
                return
            pin(os.getpid(), LOAD_CORE)
            pin(fake.pid, LOAD_CORE)
            for pid in (postmaster, stack.processes["web"].pid, stack.processes["worker cluster"].pid):
                pin(pid, GATEWAY_CORE)
            if litellm is not None:
                pin(litellm.pid, GATEWAY_CORE)

        if (os.cpu_count() or 1) < 2:
            notes.append("One core only: nothing pinned.")
        roots = {
            "foxgate web": stack.processes["web"].pid,
            "foxgate cluster": stack.processes["worker cluster"].pid,
        }
        if litellm is not None:
            roots["litellm"] = litellm.pid
        memory = MemorySampler(roots)
        memory.sample()
        idle = memory.megabytes()
        memory.start()

        targets: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
            "direct": (f"{fake_url}/v1/chat/completions", CHAT_BODY, {"Authorization": "Bearer sk-fake"}),
            "foxgate": (
                f"{stack.web_url}/v1/llm/generations",
                {**GENERATION_BODY, "sync": True},
                {"Authorization": f"Bearer {bench.secret}"},
            ),
        }
        if litellm is not None:
            targets["litellm"] = (
                f"http://127.0.0.1:{args.litellm_port}/v1/chat/completions",
                CHAT_BODY,
                {"Authorization": f"Bearer {litellm_key}"},
            )

        scenarios: list[dict[str, Any]] = []
        for delay, connections in SYNC_SCENARIOS:
            row: dict[str, Any] = {
                "mode": "sync",
                "upstream_ms": int(delay * 1000),
                "connections": connections,
            }
            for name in ("direct", "litellm", "foxgate"):
                if name not in targets:
                    row[name] = None
                    continue
                if name == "foxgate":
                    # Sync requests a client gave up on still run; do not let them weigh on the next one.
                    left = drain(bench.tenant_id, 30)
                    if left:
                        notes.append(
                            f"{left} FoxGate tasks still unfinished before sync {delay:g} s x {connections}."
                        )
                set_latency(fake_url, delay)
                pin_all()
                url, body, headers = targets[name]
                row[name] = asyncio.run(
                    closed_loop(
                        url,
                        body,
                        headers,
                        connections=connections,
                        seconds=args.seconds,
                        grace=args.grace,
                        answered=is_completion,
                    )
                )
                print(f"sync {delay:g}s x {connections} {name}: {row[name]}", flush=True)
            scenarios.append(row)

        left = drain(bench.tenant_id, 60)
        if left:
            notes.append(
                f"{left} FoxGate tasks from the sync scenarios still unfinished before async submit."
            )
        set_latency(fake_url, 0)
        pin_all()
        url, body, headers = targets["foxgate"]
        submit = asyncio.run(
            closed_loop(
                url,
                GENERATION_BODY,
                headers,
                connections=64,
                seconds=args.seconds,
                grace=args.grace,
                answered=is_task,
            )
        )
        print(f"async submit 0s x 64 foxgate: {submit}", flush=True)
        scenarios.append(
            {
                "mode": "async submit",
                "upstream_ms": 0,
                "connections": 64,
                "direct": None,
                "litellm": None,
                "foxgate": submit,
            }
        )

        left = drain(bench.tenant_id, 60)
        if left:
            notes.append(
                f"{left} tasks of earlier scenarios still unfinished when the 1,000-task run started."
            )
        set_latency(fake_url, 2.0)
        pin_all()
        tenant = tenant_create(slug=f"bench-e2e-{bench.tenant_id}", credits=Decimal(1_000_000))
        e2e = end_to_end(
            stack.web_url,
            apikey_issue(tenant=tenant).secret,
            tenant.pk,
            tasks=args.tasks,
            deadline=args.e2e_deadline,
        )
        print(f"end to end: {e2e}", flush=True)
        memory.stopping.set()
        memory.join()
        memory.sample()
    finally:
        if stack is not None:
            stack.stop()
        for process in reversed(processes):
            stop(process)

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {**machine(), "postgresql": postgres, "litellm": litellm_version() if litellm else None},
        "settings": {
            "seconds": args.seconds,
            "grace": args.grace,
            "pinning": f"FoxGate web, cluster, PostgreSQL and LiteLLM on core {GATEWAY_CORE}; "
            f"load generator and fake upstream on core {LOAD_CORE}",
        },
        "scenarios": scenarios,
        "end_to_end": e2e,
        "memory_mb": {"idle": idle, "peak": memory.megabytes()},
        "notes": notes,
    }


# --- the report -----------------------------------------------------------------------------------


def cell(result: dict[str, Any] | None, *, latency_only: bool = False) -> str:
    if result is None:
        return "—"
    parts = [] if latency_only else [f"{result['requests_per_second']:,} req/s"]
    if result["p50_ms"] is not None:
        parts.append(f"p50 {result['p50_ms']:,} ms, p99 {result['p99_ms']:,} ms")
    if result["errors"]:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result["error_kinds"].items()))
        parts.append(f"**{result['errors']} errors** ({kinds})")
    return ", ".join(parts)


def must_show(run: dict[str, Any]) -> list[str]:
    """The issue's targets, checked against this run's numbers."""
    rows = {(r["mode"], r["upstream_ms"], r["connections"]): r for r in run["scenarios"]}
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else '**not met**'}: {text}")

    fox, lite = rows[("sync", 100, 64)]["foxgate"], rows[("sync", 100, 64)]["litellm"]
    if lite:
        ratio = fox["requests_per_second"] / max(lite["requests_per_second"], 0.1)
        check(
            ratio >= 1.5 and not fox["errors"],
            f"sync 100 ms x 64 at ≥ 1.5x LiteLLM, no errors: {ratio:.2f}x, {fox['errors']} errors",
        )
    one = rows[("sync", 0, 1)]
    if one["litellm"] and one["foxgate"]["p50_ms"] is not None:
        base = one["direct"]["p50_ms"]
        added_fox, added_lite = one["foxgate"]["p50_ms"] - base, one["litellm"]["p50_ms"] - base
        check(
            added_fox <= added_lite,
            f"added p50 at 0 ms x 1 ≤ LiteLLM's: {added_fox:.1f} ms vs {added_lite:.1f} ms",
        )
    big = rows[("sync", 2000, 256)]
    ratio = big["foxgate"]["requests_per_second"] / max(big["direct"]["requests_per_second"], 0.1)
    p99 = big["foxgate"]["p99_ms"]
    check(
        ratio >= 0.8 and p99 is not None and p99 <= 3000,
        f"sync 2 s x 256 at ≥ 0.8x direct with p99 ≤ 3 s: {ratio:.2f}x, p99 {p99 or '—'} ms",
    )
    lite64 = rows[("sync", 0, 64)]["litellm"]
    if lite64:
        ratio = rows[("async submit", 0, 64)]["foxgate"]["requests_per_second"] / max(
            lite64["requests_per_second"], 0.1
        )
        check(ratio >= 3, f"async submit at 0 ms x 64 ≥ 3x LiteLLM's sync 0 ms x 64: {ratio:.2f}x")
    e2e = run["end_to_end"]
    last = e2e["seconds_to_last_final"]
    all_final = e2e["final_within_deadline"] == e2e["tasks"]
    check(
        all_final and last is not None and last <= 15,
        f"{e2e['tasks']:,} tasks on a 2 s upstream all final within 15 s: "
        f"{e2e['final_within_deadline']:,} final, last at {last or '—'} s",
    )
    check(e2e["peak_processing"] >= 400, f"≥ 400 processing at once: peak {e2e['peak_processing']}")
    peak = run["memory_mb"]["peak"]
    total = peak["foxgate web"]["rss"] + peak["foxgate cluster"]["rss"]
    check(total <= 800, f"web + cluster RSS ≤ 800 MB: {total:,.0f} MB")
    return lines


def markdown(runs: dict[str, dict[str, Any]]) -> str:
    out = [
        "# FoxGate, LiteLLM and the upstream side by side",
        "",
        "Written by `bench/side_by_side.py` (see its docstring; rerun with "
        "`.venv/bin/python bench/side_by_side.py --label NAME`). One run measures all three on the same "
        "machine: FoxGate (one uvicorn worker, one worker cluster, default settings), the LiteLLM proxy (one "
        "worker) and the fake OpenAI upstream itself. FoxGate, LiteLLM and PostgreSQL are bound to core 0; "
        "the load generator (an asyncio httpx client, closed loop of N connections) and the fake upstream to "
        "core 1. FoxGate answers in sync mode (`sync: true`, the bare ChatCompletion) unless marked. req/s "
        "counts good answers within the scenario's window; p50/p99 cover every good answer; errors are "
        "non-200 answers, transport errors and answers still missing at the end of the grace period.",
    ]
    for label, run in runs.items():
        m = run["machine"]
        out += [
            "",
            f"## {label} — {run['date']}",
            "",
            f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"Python {m['python']}, PostgreSQL {m['postgresql']}; FoxGate commit {m['foxgate_commit']}; "
            f"LiteLLM {m['litellm'] or 'not run'}. Load average at the end (1, 5, 15 min): "
            f"{', '.join(m.get('load_average', ['not recorded']))}. "
            f"Each scenario {run['settings']['seconds']:g} s of load, "
            f"then at most {run['settings']['grace']:g} s for the answers in flight.",
            "",
            "| upstream delay x connections | direct to upstream | LiteLLM | FoxGate |",
            "|---|---|---|---|",
        ]
        for row in run["scenarios"]:
            delay = (
                f"{row['upstream_ms']} ms"
                if row["upstream_ms"] < 1000
                else f"{row['upstream_ms'] / 1000:g} s"
            )
            name = f"{delay} x {row['connections']}" + (", async submit" if row["mode"] != "sync" else "")
            out.append(
                f"| {name} | {cell(row['direct'])} | {cell(row['litellm'])} | {cell(row['foxgate'])} |"
            )
        e2e = run["end_to_end"]
        last = e2e["seconds_to_last_final"]
        out += [
            "",
            f"- {e2e['tasks']:,} async tasks on a 2 s upstream (64 submitting connections): submitted in "
            f"{e2e['submit_seconds']} s ({e2e['submit_errors']} submit errors); "
            f"{e2e['final_within_deadline']:,} final within {e2e['deadline_seconds']:g} s of the first "
            f"submit ({e2e['completed']:,} completed, "
            f"{e2e['failed']:,} failed), the last at {last or '—'} s; "
            f"peak {e2e['peak_processing']} `processing` at once.",
        ]
        peak, idle = run["memory_mb"]["peak"], run["memory_mb"]["idle"]
        for name in peak:
            out.append(
                f"- {name}: peak RSS {peak[name]['rss']:,} MB (PSS {peak[name]['pss']:,} MB); "
                f"idle RSS {idle[name]['rss']:,} MB, all processes of the tree."
            )
        out += [f"- note: {note}" for note in run["notes"]]
        out += ["", "Against the issue's targets:", "", *must_show(run)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--label", default="baseline", help="name of this run in the results (default baseline)"
    )
    parser.add_argument("--seconds", type=float, default=10, help="load per scenario (default 10)")
    parser.add_argument(
        "--grace", type=float, default=10, help="wait for answers in flight after it (default 10)"
    )
    parser.add_argument(
        "--tasks", type=int, default=1000, help="async tasks in the end-to-end run (default 1000)"
    )
    parser.add_argument("--e2e-deadline", type=float, default=20, help="seconds the end-to-end run may take")
    parser.add_argument("--no-litellm", action="store_true", help="measure without LiteLLM even if installed")
    parser.add_argument(
        "--install-litellm", action="store_true", help=f"pip-install LiteLLM into {LITELLM_VENV}"
    )
    parser.add_argument("--web-port", type=int, default=8120)
    parser.add_argument("--litellm-port", type=int, default=8121)
    parser.add_argument("--fake-port", type=int, default=8992)
    parser.add_argument("--stack-fake-port", type=int, default=8993)
    parser.add_argument("--serve-fake", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return
    if args.install_litellm:
        install_litellm()
        return

    result = run(args)
    path = RESULTS / "side_by_side.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    runs[args.label] = result
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "side_by_side", "runs": runs}, indent=2) + "\n")
    (RESULTS / "side_by_side.md").write_text(markdown(runs))
    print((RESULTS / "side_by_side.md").read_text())


if __name__ == "__main__":
    main()
