"""Spend by tag and by end user: requests of every dialect carry an end user and tags, and the usage
dashboard, the task CSV, the ledger CSV and `billing_audit --by` all break spend down by them exactly as
the charged tasks carrying them add up."""

import asyncio
import csv
import io
import itertools
import json
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from tasks.models import Task
from tasks.rollups import usage_rollup
from tests.helpers import poll_until_finished, run_command

pytestmark = pytest.mark.e2e

USERS = ("alice", "bob", None)
TAGS = ({"team": "search"}, {"team": "ads", "project": "atlas"}, {"project": "atlas"}, {})


def request(index: int) -> tuple[str, dict]:
    """The index-th request of the load: each dialect in turn, streamed or not, with an end user (or
    none) and tags (or none) in that dialect's fields."""
    user, tags = USERS[index % len(USERS)], TAGS[index % len(TAGS)]
    messages = [{"role": "user", "content": f"request {index}"}]
    attribution = ({"user": user} if user else {}) | ({"metadata": tags} if tags else {})
    match index % 4:
        case 0:
            return "/v1/llm/generations", {"model": "fake-model", "messages": messages, **attribution}
        case 1:
            return "/v1/chat/completions", {"model": "fake-model", "messages": messages, **attribution}
        case 2:
            body = {"model": "fake-model", "messages": messages, "stream": True, **attribution}
            return "/v1/chat/completions", body
    # Anthropic's Messages names the end user in metadata.user_id and has no tags
    body = {"model": "fake-model", "max_tokens": 50, "messages": messages}
    return "/v1/messages", body | ({"metadata": {"user_id": user}} if user else {})


async def load(urls: list[str], secret: str, total: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        servers = itertools.cycle(urls)
        sent = [(next(servers), *request(index)) for index in range(total)]
        return await asyncio.gather(*(client.post(f"{url}{path}", json=body) for url, path, body in sent))


def expected_spend() -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """What the charged tasks carrying each tag (`key=value`) and each end user add up to."""
    by_tag, by_user = defaultdict(Decimal), defaultdict(Decimal)
    for task in Task.objects.filter(credits_charged__isnull=False):
        for key, value in task.tags.items():
            by_tag[f"{key}={value}"] += task.credits_charged
        if task.end_user:
            by_user[task.end_user] += task.credits_charged
    return dict(by_tag), dict(by_user)


def test_spend_by_tag_and_end_user_adds_up_everywhere_after_a_mixed_load(
    stack, stack_api, admin_client, tmp_path
):
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    responses = asyncio.run(load(stack.web_urls, secret, 48))
    assert {response.status_code for response in responses} == {200}
    for response in responses:  # the sync ones are done; the async generations finish in the cluster
        task_id = response.headers["X-Task-Id"] if "X-Task-Id" in response.headers else response.json()["id"]
        assert poll_until_finished(stack_api, task_id)["status"] == "completed"
    assert Task.objects.count() == 48
    # every dialect kept what its request named: two in three name an end user, Anthropic's included
    assert Task.objects.exclude(end_user="").count() == 32
    assert Task.objects.filter(dialect="anthropic").exclude(end_user="").count() == 8
    assert Task.objects.exclude(tags={}).count() == 36
    by_tag, by_user = expected_spend()
    assert set(by_tag) == {"team=search", "team=ads", "project=atlas"} and set(by_user) == {"alice", "bob"}
    assert all(spent > 0 for spent in [*by_tag.values(), *by_user.values()])

    # the dashboard, from the rollup
    usage_rollup(now=timezone.now() + timedelta(minutes=1))
    page = admin_client.get("/admin/tasks/task/usage/")
    assert {row["name"].split(": ", 1)[1]: row["spent"] for row in page.context["by_tag"]} == by_tag
    assert {row["name"].split(": ", 1)[1]: row["spent"] for row in page.context["by_end_user"]} == by_user

    # billing_audit --by (which also checks the books)
    for by, expected in (("tag", by_tag), ("user", by_user)):
        printed = run_command("billing_audit", "--by", by).splitlines()
        assert printed[-1].startswith("books balance")
        rows = [line.split("\t") for line in printed[:-1]]
        assert {name: Decimal(credits.removesuffix(" credits")) for _, name, _, credits in rows} == expected

    # the task CSV and the admin's ledger CSV, summed by their end_user and tags columns
    export = tmp_path / "tasks.csv"
    run_command("billing_audit", "--csv", str(export))
    with open(export, newline="") as task_csv:
        task_rows = list(csv.DictReader(task_csv))
    assert summed(task_rows, "credits_charged") == (by_tag, by_user)
    ledger = admin_client.get("/admin/tenants/ledgerentry/export-csv/")
    lines = csv.DictReader(io.StringIO(b"".join(ledger.streaming_content).decode()))
    captures = [line for line in lines if line["kind"] == "capture"]
    assert summed(captures, "amount", sign=-1) == (by_tag, by_user)


def summed(rows: list[dict], column: str, *, sign: int = 1) -> tuple[dict, dict]:
    by_tag, by_user = defaultdict(Decimal), defaultdict(Decimal)
    for row in rows:
        amount = sign * Decimal(row[column] or 0)
        for key, value in json.loads(row["tags"]).items():
            by_tag[f"{key}={value}"] += amount
        if row["end_user"]:
            by_user[row["end_user"]] += amount
    return dict(by_tag), dict(by_user)
