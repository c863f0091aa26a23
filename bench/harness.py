"""What the stack benchmarks share: Django on the local database, a tenant with a key and a channel on
the bundled fake provider, and the real processes started on that database."""

import os
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Bench:
    secret: str  # a key of a fresh tenant with plenty of credits
    database_url: str
    tenant_id: int


def bench_setup(*, model: str, fake_port: int) -> Bench:
    """Migrate, then price `model` and serve it from the fake provider on `fake_port`."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    from tasks.services import channel_add, price_set
    from tenants.services import apikey_issue, tenant_create

    call_command("migrate", interactive=False, verbosity=0)
    run_id = uuid.uuid4().hex[:8]
    tenant = tenant_create(slug=f"bench-{run_id}", credits=Decimal(1_000_000))
    price_set(model_name=model, input_per_million=Decimal(1), output_per_million=Decimal(2))
    channel_add(
        name=f"{model}-{run_id}",
        provider="openai",
        base_url=f"http://127.0.0.1:{fake_port}/v1",
        api_key="",
        model_names=[model],
    )
    db = connection.settings_dict
    database_url = make_conninfo(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=str(db["PORT"]))
    return Bench(secret=apikey_issue(tenant=tenant).secret, database_url=database_url, tenant_id=tenant.pk)


def bench_stack(bench: Bench, *, web_port: int, fake_port: int, cluster_workers: int, web_workers: int = 1):
    """The real processes (web, worker cluster, fake provider) on the benchmark's database, started."""
    from foxgate.stack import Stack

    env = {
        "DATABASE_URL": bench.database_url,
        "FOXGATE_WORKERS": str(cluster_workers),
        "FOXGATE_LOG_LEVEL": "WARNING",
    }
    return Stack(
        web_port=web_port,
        fake_port=fake_port,
        env=env,
        web_workers=web_workers,
        log_dir=ROOT / ".foxgate" / "bench-logs",
    ).start()


def bench_stack_default(bench: Bench, *, web_port: int, fake_port: int):
    """The real processes as an operator starts them: one uvicorn worker and one cluster with every
    setting at its default (no worker count forced), on the benchmark's database."""
    from foxgate.stack import Stack

    env = {"DATABASE_URL": bench.database_url, "FOXGATE_LOG_LEVEL": "WARNING"}
    return Stack(
        web_port=web_port, fake_port=fake_port, env=env, log_dir=ROOT / ".foxgate" / "bench-logs"
    ).start()


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it that is still running (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: the parent id follows the last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        if Path(f"/proc/{current}").exists():
            tree.append(current)
        frontier.extend(children.get(current, []))
    return tree


def pin(pid: int, core: int) -> int:
    """Bind every thread of `pid` and of its descendants to `core` (what `taskset -a -c` does to a running
    process); processes and threads started later inherit it. Returns how many processes it bound."""
    pinned = 0
    for process in process_tree(pid):
        try:
            for thread in Path(f"/proc/{process}/task").iterdir():
                os.sched_setaffinity(int(thread.name), {core})
            pinned += 1
        except (OSError, ProcessLookupError):
            continue  # exited meanwhile
    return pinned


def tree_memory(pid: int) -> tuple[int, int]:
    """Resident and proportional set size in bytes, summed over `pid` and its descendants.

    RSS counts pages that forked workers share once per process; PSS splits them, so it is what the tree
    really occupies. Both are reported."""
    rss = pss = 0
    for process in process_tree(pid):
        try:
            for line in Path(f"/proc/{process}/smaps_rollup").read_text().splitlines():
                name, _, value = line.partition(":")
                if name == "Rss":
                    rss += int(value.split()[0]) * 1024
                elif name == "Pss":
                    pss += int(value.split()[0]) * 1024
        except OSError:
            continue
    return rss, pss
