"""Where the CPU of one request goes: web, worker cluster and PostgreSQL, per request (issue 11).

Starts the same processes as bench/side_by_side.py (fake OpenAI upstream and this load generator on core
1; FoxGate's web server, worker cluster and PostgreSQL on core 0), runs one closed-loop scenario, and reads
each process's CPU time (utime + stime in /proc) before and after. The report divides each group's CPU
time by the answers: the milliseconds of core 0 one request costs, and which process spends them. With
--py-spy, a second run of the same scenario samples the web server and each cluster process and lists the
functions they were in most often.

    .venv/bin/python bench/cpu_per_request.py --delay 0 --connections 64 [--sync|--async] [--py-spy]
"""

import argparse
import asyncio
import atexit
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import ROOT, bench_setup, bench_stack_default, pin, process_tree
from side_by_side import (
    GATEWAY_CORE,
    GENERATION_BODY,
    LOAD_CORE,
    MODEL,
    closed_loop,
    drain,
    is_completion,
    is_task,
    set_latency,
    spawn,
    stop,
    wait_until_up,
)

TICKS = os.sysconf("SC_CLK_TCK")
RELAY_THREADS = 6  # at least: the engine's loop, its relay threads and its lease thread


def role(pid: int) -> str:
    """A process's part, from its command line: what the report groups CPU time by."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        title = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    line = b" ".join(argv).decode(errors="replace")
    if "postgres" in line or title.startswith("postgres"):
        # A backend's title names what it serves poorly; the postmaster and its helpers are "postgres".
        return "postgresql"
    if "uvicorn" in line:
        return "web"
    if "qcluster" in line:
        # django-q2's processes share a command line. A worker process runs the relay engine's threads
        # (its loop, the relay and lease threads): many; the sentinel, pusher and monitor a few each.
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
        return (
            "cluster:worker processes"
            if threads >= RELAY_THREADS
            else "cluster:django-q2 (sentinel, pusher, monitor)"
        )
    return title


def cpu_seconds(roots: list[int]) -> dict[int, tuple[str, float]]:
    found = {}
    for root in roots:
        for pid in process_tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the command: state is fields[0], so utime and stime (the 14th and 15th) are [11], [12].
            found[pid] = (role(pid), (int(fields[11]) + int(fields[12])) / TICKS)
    return found


TABLE_STATS = """
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
    FROM pg_stat_user_tables
"""


def table_stats() -> dict[str, tuple[int, ...]]:
    """Rows inserted, updated, deleted and scans started, per table, and transactions committed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(TABLE_STATS)
        found = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        found["(transactions committed)"] = (cursor.fetchone()[0], 0, 0, 0)
    return found


def statements_logged(data_dir: Path, run: Callable[[], dict], requests: int) -> list[str]:
    """Every statement PostgreSQL executes while `run` sends `requests` requests one at a time, per
    request, by the application that sent it (foxgate-web, foxgate-cluster, or the relay's own)."""
    from django.db import connection

    log = data_dir / "pgdata" / "log"
    with connection.cursor() as cursor:
        cursor.execute("ALTER SYSTEM SET log_statement = 'all'")
        cursor.execute("ALTER SYSTEM SET log_line_prefix = '@@%a@@ '")
        cursor.execute("SELECT pg_reload_conf()")
    start = log.stat().st_size
    try:
        run()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER SYSTEM RESET log_statement")
            cursor.execute("ALTER SYSTEM RESET log_line_prefix")
            cursor.execute("SELECT pg_reload_conf()")
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in text.splitlines():
        # A prepared statement's run is logged as "execute <name>: <sql>", any other as "statement: <sql>".
        found = re.search(r"LOG:  (?:statement|execute [^:]+): (.*)", line)
        if found is None or "@@" not in line:
            continue
        app = line.split("@@")[1] or "(none)"
        sql = " ".join(found.group(1).split())
        if "pg_reload_conf" in sql or "ALTER SYSTEM" in sql:
            continue
        counts[(app, sql[:110])] += 1
    lines = [f"statements per request ({requests} sequential requests), by application:"]
    for app in sorted({app for app, _ in counts}):
        mine = {sql: n for (a, sql), n in counts.items() if a == app}
        lines.append(f"  {app}: {sum(mine.values()) / requests:.2f}")
        for sql, n in sorted(mine.items(), key=lambda item: -item[1]):
            lines.append(f"    {n / requests:5.2f}  {sql}")
    return lines


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw"]
    argv += ["--output", str(out), "--nonblocking", "--rate", "200"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def top_functions(raw: Path, limit: int) -> list[str]:
    """Own and inclusive sample shares of the most frequent functions in a py-spy raw (folded) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["  (no samples)"]
    lines = [f"  {total} samples", "  own%  function"]
    lines += [f"  {100 * n / total:5.1f}  {name}" for name, n in own.most_common(limit)]
    lines += ["  incl%  function"]
    lines += [f"  {100 * n / total:5.1f}  {name}" for name, n in inclusive.most_common(limit * 2)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.0, help="upstream latency, seconds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests per second on a fixed schedule (default: closed loop)"
    )
    parser.add_argument("--async", dest="sync", action="store_false", help="async submit instead of sync")
    parser.add_argument("--py-spy", action="store_true", help="then sample the processes with py-spy")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--statements", type=int, default=0, help="then log every statement of this many requests"
    )
    parser.add_argument("--fake-port", type=int, default=18301)
    parser.add_argument("--web-port", type=int, default=18302)
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="foxgate-cpu-"))
    atexit.register(shutil.rmtree, data_dir, True)
    os.environ["FOXGATE_DATA_DIR"] = str(data_dir)
    fake_url = f"http://127.0.0.1:{args.fake_port}"
    fake = spawn(
        "fake", [sys.executable, str(ROOT / "bench" / "side_by_side.py"), "--serve-fake", str(args.fake_port)]
    )
    stack = None
    report: list[str] = []
    try:
        wait_until_up(f"{fake_url}/_fake/requests", fake, timeout=30)
        bench = bench_setup(model=MODEL, fake_port=args.fake_port)
        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        stack = bench_stack_default(bench, web_port=args.web_port, fake_port=args.fake_port + 10)
        roots = [postmaster, stack.processes["web"].pid, stack.processes["worker cluster"].pid]
        url = f"{stack.web_url}/v1/llm/generations"
        body = {**GENERATION_BODY, "sync": args.sync}
        headers = {"Authorization": f"Bearer {bench.secret}"}
        answered = is_completion if args.sync else is_task

        def scenario() -> dict:
            pin(os.getpid(), LOAD_CORE)
            pin(fake.pid, LOAD_CORE)
            for root in roots:
                pin(root, GATEWAY_CORE)
            set_latency(fake_url, args.delay)
            return asyncio.run(
                closed_loop(
                    url,
                    body,
                    headers,
                    connections=args.connections,
                    seconds=args.seconds,
                    grace=args.seconds,
                    answered=answered,
                    rate=args.rate,
                )
            )

        scenario()  # warm up: connections, caches, the JIT-less Python's first imports
        drain(bench.tenant_id, 60)
        before_tables = table_stats()
        before = cpu_seconds(roots)
        wall = time.monotonic()
        result = scenario()
        left = drain(bench.tenant_id, 60)  # the tasks' CPU counts too, including those still running
        wall = time.monotonic() - wall
        after = cpu_seconds(roots)
        time.sleep(0.6)  # PostgreSQL's backends report their counters at most every 0.5 s
        after_tables = table_stats()
        spent: collections.Counter[str] = collections.Counter()
        for pid, (name, seconds) in after.items():
            spent[name] += seconds - before.get(pid, (name, 0.0))[1]
        answers = result["answered"]
        mode = "sync" if args.sync else "async submit"
        paced = f", {args.rate:g} requests/s" if args.rate else ""
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        report.append(
            f"# {mode}, upstream {args.delay * 1000:g} ms x {args.connections} connections, "
            f"{args.seconds:g} s{paced}; load average {load}"
        )
        report.append(f"result: {result}; unfinished after drain: {left}; wall incl. drain {wall:.1f} s")
        total = sum(spent.values())
        report.append(
            f"core-0 CPU per answer: {1000 * total / max(answers, 1):.2f} ms "
            f"({total:.2f} s over {answers} answers)"
        )
        for name, seconds in spent.most_common():
            report.append(f"  {name:28s} {1000 * seconds / max(answers, 1):7.2f} ms  ({seconds:.2f} s)")

        report.append("per answer, by table: inserted, updated, deleted, scans")
        for table, counts in sorted(after_tables.items()):
            old = before_tables.get(table, (0, 0, 0, 0))
            per = [(new - was) / max(answers, 1) for new, was in zip(counts, old, strict=True)]
            if any(per):
                report.append(f"  {table:28s} " + "  ".join(f"{value:6.2f}" for value in per))

        if args.statements:
            drain(bench.tenant_id, 60)

            def sequential() -> dict:
                with httpx.Client(headers=headers, timeout=30) as client:
                    for _ in range(args.statements):
                        client.post(url, json=body).raise_for_status()
                drain(bench.tenant_id, 60)
                return {}

            report += statements_logged(data_dir, sequential, args.statements)

        if args.py_spy:
            drain(bench.tenant_id, 60)
            targets = {"web": stack.processes["web"].pid}
            for pid in process_tree(stack.processes["worker cluster"].pid):
                targets[f"cluster {pid} {Path(f'/proc/{pid}/comm').read_text().strip()}"] = pid
            spies = {
                name: (py_spy(pid, args.seconds, data_dir / f"{pid}.txt"), data_dir / f"{pid}.txt")
                for name, pid in targets.items()
            }
            scenario()
            for name, (spy, out) in spies.items():
                spy.wait()
                if out.exists():
                    report.append(f"\n## py-spy: {name}")
                    report += top_functions(out, args.top)
    finally:
        if stack is not None:
            stack.stop()
        stop(fake)
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
