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
