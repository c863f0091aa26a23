"""Idempotency-Key on every submit endpoint: a retried submit whose answer was lost gets the first
request's task (or its result), with no second hold and no second upstream call."""

import asyncio
import itertools
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from tasks.models import IdempotencyKey, Task
from tenants.models import LedgerEntry
from tests.helpers import poll_until_finished, upstream_requests

pytestmark = pytest.mark.e2e

BODY = {"model": "fake-model", "prompt": "caption image 1"}


async def submits(urls: list[str], secret: str, total: int, body: dict, key: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": key}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        servers = itertools.islice(itertools.cycle(urls), total)
        return await asyncio.gather(*(client.post(f"{url}/v1/llm/generations", json=body) for url in servers))


def test_50_concurrent_submits_with_one_key_over_two_web_processes_make_one_task(stack, stack_api):
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    responses = asyncio.run(submits(stack.web_urls, secret, 50, BODY, "batch-7-item-1"))
    assert {response.status_code for response in responses} == {200}
    (task_id,) = {response.json()["id"] for response in responses}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 49
    assert poll_until_finished(stack_api, task_id)["status"] == "completed"
    assert Task.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="hold").count() == 1
    assert len(upstream_requests(stack)) == 1

    # later, the same key again: the same task, finished, still no second call
    again = stack_api.post("/v1/llm/generations", json=BODY, headers={"Idempotency-Key": "batch-7-item-1"})
    assert again.json()["id"] == task_id and again.json()["status"] == "completed"
    assert len(upstream_requests(stack)) == 1


def test_the_same_key_with_another_request_is_refused(stack_api):
    first = stack_api.post("/v1/llm/generations", json=BODY, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200
    other = stack_api.post(
        "/v1/llm/generations", json=BODY | {"prompt": "caption image 2"}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    assert (other.json()["error"]["code"], other.json()["error"]["param"]) == (
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    bad = stack_api.post("/v1/llm/generations", json=BODY, headers={"Idempotency-Key": "has spaces"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (422, "Idempotency-Key")
    assert Task.objects.count() == 1


def test_a_sync_retry_gets_the_first_result_and_a_key_expires_after_its_window(stack, stack_api):
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    key = {"Idempotency-Key": "chat-42"}
    with openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=secret, max_retries=0) as client:
        ask = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "extra_headers": key}
        first = client.chat.completions.create(**ask)
        retried = client.chat.completions.create(**ask)
        assert retried.id == first.id and retried.choices[0].message.content == "Echo: hi"
        assert len(upstream_requests(stack)) == 1

        IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
        assert client.chat.completions.create(**ask).id != first.id  # the window passed: a new request
    assert Task.objects.count() == 2 and len(upstream_requests(stack)) == 2
