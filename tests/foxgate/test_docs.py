"""The README and docs/API.md say what the code does: their settings, endpoints and commands are real."""

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.test import Client
from psycopg.conninfo import make_conninfo

CHECKOUT = Path(__file__).resolve().parent.parent.parent
README = (CHECKOUT / "README.md").read_text()


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


def test_readme_configuration_table_lists_exactly_the_environment_variables_settings_read():
    table = section(README, "## Configuration")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE))
    settings_source = (CHECKOUT / "foxgate" / "settings.py").read_text()
    read = set(re.findall(r"\"((?:FOXGATE_|DATABASE_)[A-Z_]+)\"", settings_source))
    assert documented == read, {"undocumented": read - documented, "not read": documented - read}


def test_api_reference_lists_as_served_exactly_the_operations_of_the_running_schema():
    served_rows = section((CHECKOUT / "docs" / "API.md").read_text(), "## What is served today")
    served, not_yet = set(), set()
    for row in served_rows.splitlines():
        operations = set(re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/v1/[^`]+)`", row))
        (not_yet if "not yet" in row else served).update(operations)
    schema = Client().get("/v1/openapi.json").json()
    running = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert served == running
    assert not (not_yet & running)  # a row marked "not yet" is not served


@pytest.fixture
def empty_database_url(django_db_blocker):
    """A new, empty database on the test server, as `DATABASE_URL`; dropped afterwards."""
    with django_db_blocker.unblock():
        db = connection.settings_dict
    server = {"user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"], "port": db["PORT"]}
    name = "readme_commands"
    with psycopg.connect(make_conninfo(dbname="postgres", **server), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(dbname=name, **server)
    with psycopg.connect(make_conninfo(dbname="postgres", **server), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.e2e
def test_readme_operating_commands_work_as_pasted(empty_database_url, tmp_path):
    block = re.search(r"```sh\n(.*?)```", section(README, "## Operating"), flags=re.DOTALL)
    assert block and "foxgate createtenant" in block[1]
    # .venv/bin first on PATH, as `source .venv/bin/activate` does
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "DATABASE_URL": empty_database_url}
    # `./dev up` migrates before anything else runs; then the block, as one shell session.
    script = f"set -euo pipefail\nfoxgate migrate --verbosity 0\n{block[1]}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "revoked key" in done.stdout
    assert (tmp_path / "nov.csv").read_text().startswith("task")
