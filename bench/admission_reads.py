"""The reads a sync request no longer makes, measured alone: CPU of this process and of PostgreSQL per call.

- the catalog read of a submit (tasks/services.py price_current): from the database, and from the process's
  catalog (tasks/catalog.py) as a web process with a listening event listener serves it;
- the task read after a sync request's wake-up: task_outcome through sync_to_async (its thread hop and the
  pooled connection's checkout and return included), against the outcome parsed from the notification.

On a shared machine CPU time per call is steadier than a throughput: it is what one call costs, whoever else
runs. PostgreSQL's CPU is summed over the embedded server's processes.

    .venv/bin/python bench/admission_reads.py [--calls 2000]
"""

import argparse
import asyncio
import atexit
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import bench_setup

MODEL = "admission-reads-model"
TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu(data_dir: str) -> float:
    """CPU seconds of the embedded PostgreSQL under `data_dir` (its processes run there)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not os.readlink(proc / "cwd").startswith(data_dir):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def measure(label: str, calls: int, run: Callable[[int], object]) -> None:
    """`run(n)` makes n calls; the first one warms up (the statement written, the catalog filled)."""
    data_dir = os.environ["FOXGATE_DATA_DIR"]
    run(1)
    own, pg = time.process_time(), postgres_cpu(data_dir)
    run(calls)
    own, pg = time.process_time() - own, postgres_cpu(data_dir) - pg
    print(f"{label:58} {1000 * own / calls:6.3f} ms here {1000 * pg / calls:6.3f} ms PostgreSQL")


def repeated(call: Callable[[], object]) -> Callable[[int], object]:
    return lambda n: [call() for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    data_dir = Path(tempfile.mkdtemp(prefix="foxgate-reads-"))
    atexit.register(shutil.rmtree, data_dir, True)
    os.environ["FOXGATE_DATA_DIR"] = str(data_dir)
    bench = bench_setup(model=MODEL, fake_port=9)
    from asgiref.sync import sync_to_async
    from django.db import connection

    from tasks.catalog import catalog
    from tasks.events import FINISHED, PAYLOAD_LIMIT
    from tasks.models import Task
    from tasks.selectors import TaskOutcome, task_outcome
    from tasks.serializers import GenerationRequestSerializer
    from tasks.services import price_current, task_submit
    from tasks.settle import NOTIFY, task_finish
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.get(pk=bench.tenant_id)

    def price() -> object:
        return price_current(name=MODEL, group="", tenant=tenant)

    measure("price_current, read from the database", calls, repeated(price))

    class Ear:
        def hears(self) -> bool:
            return True

    ear = Ear()
    catalog.listener_started(ear)
    measure("price_current, from the process's catalog", calls, repeated(price))
    catalog.listener_stopped(ear)

    # A sync task settled as the cluster settles one, with the fake provider's answer.
    serializer = GenerationRequestSerializer(data={"model": MODEL, "prompt": "Hi there", "sync": True})
    serializer.is_valid(raise_exception=True)
    api_key = ApiKey.objects.get(tenant=tenant)
    task_id = task_submit(api_key=api_key, validated=serializer.validated_data).task.pk
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    result = {
        "id": "chatcmpl-0123456789",
        "object": "chat.completion",
        "created": 1776874481,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Echo: Hi there"},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    task = Task.objects.select_related("price").get(pk=task_id)
    task_finish(task, status=Task.Status.COMPLETED, result=result, usage=usage)
    task.refresh_from_db()
    read = sync_to_async(task_outcome)

    async def reads(n: int) -> None:
        for _ in range(n):
            await read(task_id=task.pk)

    payload = json.dumps(
        {"status": task.status, "result": task.result, "error_code": "", "error_message": ""}
    )
    measure("sync wake-up: task_outcome through sync_to_async", calls, lambda n: asyncio.run(reads(n)))
    measure(
        "sync wake-up: the outcome parsed from the notification",
        calls,
        repeated(lambda: TaskOutcome(**json.loads(payload))),
    )

    # What carrying the outcome adds to the settle statement: its NOTIFY alone, on the settled row.
    params = {
        "events": "foxgate_bench",
        "task": task_id,
        "carry_outcome": True,
        "finished": FINISHED,
        "payload_limit": PAYLOAD_LIMIT,
        "status": task.status,
        "result": json.dumps(result),
        "error_code": "",
        "error_message": "",
    }
    for label, notify in [
        ("settle's NOTIFY, the bare task id (before)", "SELECT pg_notify(%(events)s, id)::text FROM settled"),
        ("settle's NOTIFY, carrying the outcome", NOTIFY),
    ]:
        sql = f"WITH settled AS (SELECT %(task)s::text AS id) {notify}"

        def run(n: int, sql: str = sql) -> None:
            with connection.cursor() as cursor:
                for _ in range(n):
                    cursor.execute(sql, params)

        measure(label, calls, run)


if __name__ == "__main__":
    main()
