"""Resumable SSE task streams fed by the worker cluster, over real HTTP, for every provider."""

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from httpx_sse import aconnect_sse, connect_sse
from openai.types.chat import ChatCompletionChunk

from foxgate.fakes.anthropic import FakeAnthropic
from foxgate.fakes.gemini import FakeGemini
from foxgate.fakes.openai import FakeOpenAI
from tasks.jobs import stream_chunks_expire_job
from tasks.models import StreamChunk, Task
from tasks.services import channel_add, price_set
from tenants.services import apikey_issue, tenant_create
from tests.helpers import poll_until_finished, run_command, tenant_client

pytestmark = pytest.mark.e2e

FAKES = {"openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}
PROMPT = "one two three four five six seven eight nine ten"  # echoed back: 11 words, one chunk each


@pytest.fixture(params=list(FAKES))
def provider(request, stack, stack_db):
    with FAKES[request.param](chunk_interval=0.02) as fake:
        price_set(model_name="streamer", input_per_million=Decimal(1), output_per_million=Decimal(1000))
        channel_add(
            name=request.param,
            provider=request.param,
            base_url=fake.base_url,
            api_key="k",
            model_names=["streamer"],
        )
        tenant = tenant_create(slug="streams", credits=Decimal(10))
        secret = apikey_issue(tenant=tenant).secret
        with httpx.Client(
            base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
        ) as c:
            yield request.param, fake, c, tenant


def submit(client, **body) -> str:
    response = client.post(
        "/v1/llm/generations", json={"model": "streamer", "prompt": PROMPT, "stream": True} | body
    )
    assert response.status_code == 200, response.json()
    assert response.json()["stream"] == {"url": f"/v1/llm/generations/{response.json()['id']}/stream"}
    return response.json()["id"]


def read(client, task_id: str, *, stop_after: int | None = None, **request) -> list:
    """(event, id, data) of the stream, hanging up after `stop_after` chunks if given."""
    events = []
    with connect_sse(client, "GET", f"/v1/llm/generations/{task_id}/stream", **request) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            data = json.loads(sse.data)
            if sse.event == "chunk":
                ChatCompletionChunk.model_validate(data)  # OpenAI's own model accepts every chunk
            events.append((sse.event, sse.id, data))
            if stop_after is not None and len(events) == stop_after:
                break
    return events


def text_of(chunks: list) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_chunks_arrive_in_order_and_add_up_to_the_result(provider):
    _, _, client, _ = provider
    task_id = submit(client)
    events = read(client, task_id)
    *chunks, (last, _, done) = events
    assert last == "done" and done == {"total_chunks": len(chunks)}
    assert [int(event_id) for _, event_id, _ in chunks] == list(range(len(chunks)))
    data = [chunk for _, _, chunk in chunks]
    assert data[-1]["usage"]["completion_tokens"] > 0  # the last chunk carries usage
    task = poll_until_finished(client, task_id)
    assert task["status"] == "completed"
    assert text_of(data) == task["results"][0]["choices"][0]["message"]["content"] == f"Echo: {PROMPT}"
    assert task["results"][0]["usage"] == data[-1]["usage"]


@pytest.mark.parametrize("resume", ["offset", "last_event_id"])
def test_a_client_that_reconnects_gets_exactly_the_rest(provider, resume):
    _, _, client, _ = provider
    task_id = submit(client)
    first = read(client, task_id, stop_after=4)
    k = len(first)
    request = (
        {"params": {"offset": k}} if resume == "offset" else {"headers": {"Last-Event-ID": first[-1][1]}}
    )
    rest = read(client, task_id, **request)
    assert [int(i) for _, i, _ in rest[:-1]] == list(range(k, k + len(rest) - 1))
    whole = [c for _, _, c in first] + [c for _, _, c in rest[:-1]]
    assert text_of(whole) == f"Echo: {PROMPT}"
    assert rest[-1][0] == "done" and rest[-1][2]["total_chunks"] == len(whole)


def test_a_client_that_leaves_for_good_does_not_stop_the_task(provider):
    _, _, client, tenant = provider
    task_id = submit(client)
    read(client, task_id, stop_after=2)
    task = poll_until_finished(client, task_id)
    assert task["status"] == "completed" and text_of([]) == ""
    assert Task.objects.get(pk=task_id).ledger.filter(kind="capture").count() == 1
    tenant.refresh_from_db()
    assert tenant.balance == Decimal(10) - Decimal(task["usage"]["credits_charged"])


def test_joining_after_the_end_replays_everything(provider):
    _, _, client, _ = provider
    task_id = submit(client)
    assert poll_until_finished(client, task_id)["status"] == "completed"
    events = read(client, task_id)
    assert events[-1][0] == "done" and text_of([c for _, _, c in events[:-1]]) == f"Echo: {PROMPT}"


def test_a_stream_cut_mid_way_fails_the_task_and_charges_what_was_delivered(provider):
    _, fake, client, tenant = provider
    fake.configure(cut_after=3)
    task_id = submit(client)
    events = read(client, task_id)
    assert events[-1][0] == "error" and events[-1][2]["code"] == "upstream_error"
    delivered = text_of([c for e, _, c in events if e == "chunk"])
    assert delivered and delivered != f"Echo: {PROMPT}"
    task = Task.objects.get(pk=task_id)
    assert task.status == "failed" and task.attempts.count() == 1  # no second answer after a partial one
    assert task.charge_basis == "delivered_estimate" and task.credits_charged > 0
    tenant.refresh_from_db()
    assert tenant.held == 0 and tenant.balance == Decimal(10) - task.credits_charged
    assert "books balance" in run_command("billing_audit")  # exits 0


def test_the_provider_saying_length_completes_with_finish_reason_length(provider):
    _, _, client, _ = provider
    task_id = submit(client, max_tokens=3)
    events = read(client, task_id)
    assert events[-1][0] == "done"
    finish = [
        c["choices"][0]["finish_reason"]
        for _, _, c in events[:-1]
        if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finish == ["length"]
    assert poll_until_finished(client, task_id)["results"][0]["choices"][0]["finish_reason"] == "length"


@pytest.fixture
def openai_client(stack, stack_db):
    """The stack's own fake OpenAI provider, slow to start talking, and a client."""
    price_set(model_name="streamer", input_per_million=Decimal(1), output_per_million=Decimal(1))
    channel_add(
        name="stack-fake",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=["streamer"],
    )
    httpx.post(f"{stack.fake_url}/_fake/reset")
    with tenant_client(stack, "sse") as client:
        yield client


def test_sync_stream_answers_the_post_with_the_event_stream(openai_client):
    body = {"model": "streamer", "prompt": PROMPT, "stream": True, "sync": True}
    with connect_sse(openai_client, "POST", "/v1/llm/generations", json=body) as source:
        task_id = source.response.headers["X-Task-Id"]
        events = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]
    assert events[-1] == ("done", {"total_chunks": len(events) - 1})
    assert text_of([data for _, data in events[:-1]]) == f"Echo: {PROMPT}"
    assert poll_until_finished(openai_client, task_id)["status"] == "completed"


def test_a_silent_upstream_gets_keep_alive_comments(stack, openai_client):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"time_to_first_token": 2.5})
    task_id = submit(openai_client)
    with openai_client.stream("GET", f"/v1/llm/generations/{task_id}/stream") as response:
        lines = [line for line in response.iter_lines()]
    assert ": keep-alive" in lines[: lines.index("event: chunk")]  # before the first chunk
    assert "event: done" in lines


def test_streams_of_non_stream_tasks_and_other_tenants_are_404(openai_client):
    plain = openai_client.post("/v1/llm/generations", json={"model": "streamer", "prompt": "x"}).json()["id"]
    response = openai_client.get(
        f"/v1/llm/generations/{plain}/stream", headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "stream_not_found"
    streamed = submit(openai_client)
    outsider = apikey_issue(tenant=tenant_create(slug="outsider", credits=Decimal(1))).secret
    theirs = openai_client.get(
        f"/v1/llm/generations/{streamed}/stream", headers={"Authorization": f"Bearer {outsider}"}
    )
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "task_not_found"


def test_an_expired_stream_is_410_and_its_chunks_are_cleaned_up(openai_client):
    task_id = submit(openai_client)
    assert poll_until_finished(openai_client, task_id)["status"] == "completed"
    Task.objects.filter(pk=task_id).update(finished_at=timezone.now() - timedelta(minutes=16))
    response = openai_client.get(f"/v1/llm/generations/{task_id}/stream")
    assert response.status_code == 410
    assert response.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "not_found",
        "code": "stream_expired",
        "param": None,
    }
    assert stream_chunks_expire_job() > 0
    assert not StreamChunk.objects.filter(task_id=task_id).exists()
    assert openai_client.get(f"/v1/tasks/{task_id}").json()["status"] == "completed"  # the result stays


@pytest.mark.parametrize(
    ("params", "headers"), [({"offset": "-1"}, {}), ({"offset": "two"}, {}), ({}, {"Last-Event-ID": "abc"})]
)
def test_a_bad_resume_point_is_422(openai_client, params, headers):
    task_id = submit(openai_client)
    response = openai_client.get(f"/v1/llm/generations/{task_id}/stream", params=params, headers=headers)
    assert response.status_code == 422 and response.json()["error"]["param"] in {"offset", "Last-Event-ID"}


def test_waiting_clients_do_not_hold_database_connections(stack, openai_client):
    """Three times more stream clients than the web process has pooled connections (4), all waiting at once
    for an upstream that is silent for 3 s. Were each waiting client to keep the connection its request
    began with, the fifth and later would get no answer at all (not even keep-alives) until the first
    four left, and their 2.5 s read timeout would run out."""
    httpx.post(f"{stack.fake_url}/_fake/config", json={"time_to_first_token": 3.0})
    stream_task = submit(openai_client)

    async def everyone() -> list:
        headers = dict(openai_client.headers)
        async with httpx.AsyncClient(base_url=stack.web_url, headers=headers, timeout=2.5) as http:

            async def stream() -> str:
                async with aconnect_sse(http, "GET", f"/v1/llm/generations/{stream_task}/stream") as source:
                    return [sse.event async for sse in source.aiter_sse()][-1]

            return await asyncio.gather(*[stream() for _ in range(12)])

    assert asyncio.run(everyone()) == ["done"] * 12


def test_progress_advances_while_output_arrives(stack, openai_client):
    httpx.post(f"{stack.fake_url}/_fake/config", json={"chunk_interval": 0.15})
    task_id = submit(openai_client, max_tokens=20)
    seen = {event_id for _, event_id, _ in read(openai_client, task_id, stop_after=7)}
    assert len(seen) == 7
    during = openai_client.get(f"/v1/tasks/{task_id}").json()
    assert during["status"] == "processing" and 1 < during["progress"] < 100
    assert poll_until_finished(openai_client, task_id)["progress"] == 100
