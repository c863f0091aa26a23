"""The relay in the worker: claim, call the OpenAI-compatible upstream, store and settle."""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from openai.types.chat import ChatCompletion

from tasks.jobs import task_run
from tasks.models import Task
from tenants.models import LedgerEntry

pytestmark = pytest.mark.django_db


def submit(api, **body) -> str:
    response = api.post("/v1/llm/generations", {"model": "fake-model", **body}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["id"]


def test_text_task_completes_with_a_chat_completion(api, tenant, openai_channel, fake_openai):
    task_id = submit(api, prompt="Hello there", system_prompt="Be nice.", temperature=0.5, max_tokens=50)
    task_run(task_id)

    body = api.get(f"/v1/tasks/{task_id}").json()
    assert body["status"] == "completed" and body["progress"] == 100 and body["error"] is None
    completion = ChatCompletion.model_validate(body["results"][0])
    assert completion.choices[0].message.content == "Echo: Hello there"
    assert completion.choices[0].finish_reason == "stop"

    sent = fake_openai.requests[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hello there"},
    ]
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 50 and sent["model"] == "fake-model"


def test_vision_task_sends_images_as_content_parts(api, openai_channel, fake_openai):
    task_id = submit(
        api, prompt="Describe", image_urls=["https://example.com/a.png", "https://example.com/b.png"]
    )
    task_run(task_id)

    body = api.get(f"/v1/tasks/{task_id}").json()
    assert body["status"] == "completed"
    assert ChatCompletion.model_validate(body["results"][0]).choices[0].message.content == (
        "Echo: Describe [images: 2]"
    )
    parts = fake_openai.requests[-1]["body"]["messages"][0]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "image_url"]


def test_completion_charges_reported_usage_and_releases_the_rest(api, tenant, openai_channel):
    task_id = submit(api, prompt="Hello there", max_tokens=100)
    task_run(task_id)

    task = Task.objects.get(pk=task_id)
    usage = task.result["usage"]
    expected = (Decimal(usage["prompt_tokens"]) * 1 + Decimal(usage["completion_tokens"]) * 2) / 1_000_000
    assert task.credits_charged == expected
    tenant.refresh_from_db()
    assert tenant.held == 0
    assert tenant.balance == Decimal(100) - expected
    kinds = sorted(LedgerEntry.objects.filter(task=task).values_list("kind", flat=True))
    assert kinds == ["capture", "hold", "release"]
    assert api.get(f"/v1/tasks/{task_id}").json()["usage"]["credits_charged"] == format(
        expected.normalize(), "f"
    )


def test_redelivered_job_never_calls_the_upstream_twice(api, openai_channel, fake_openai):
    task_id = submit(api, prompt="once")
    task_run(task_id)
    task_run(task_id)
    assert len([r for r in fake_openai.requests if r["path"] == "/v1/chat/completions"]) == 1
    assert LedgerEntry.objects.filter(task_id=task_id, kind="capture").count() == 1


@pytest.mark.parametrize(
    # retryable errors move on to other channels, or call the only one again, until MAX_ATTEMPTS calls;
    # then the task has exhausted them all
    ("status", "code"),
    [(500, "all_platforms_exhausted"), (429, "all_platforms_exhausted"), (400, "upstream_rejected")],
)
def test_upstream_error_fails_the_task_and_releases_its_hold(
    api, tenant, openai_channel, fake_openai, status, code
):
    fake_openai.configure(status=status)
    task_id = submit(api, prompt="doomed")
    task_run(task_id)

    body = api.get(f"/v1/tasks/{task_id}").json()
    assert body["status"] == "failed" and body["results"] is None and body["progress"] == 100
    assert body["error"]["code"] == code and body["error"]["type"] == "task_error"
    assert str(status) in body["error"]["message"]
    assert body["usage"]["credits_charged"] == "0"
    tenant.refresh_from_db()
    assert tenant.held == 0 and tenant.balance == Decimal(100)
    attempts = list(Task.objects.get(pk=task_id).attempts.all())
    assert len(attempts) == (1 if status == 400 else 3)
    for attempt in attempts:
        assert attempt.http_status == status and attempt.latency_ms is not None
        assert attempt.error_code == ("upstream_rejected" if status == 400 else "upstream_error")


def test_upstream_timeout_fails_with_upstream_timeout(api, openai_channel, fake_openai, settings):
    settings.UPSTREAM_TIMEOUT = 0.3
    fake_openai.configure(hang=True)
    task_id = submit(api, prompt="slow")
    task_run(task_id)
    error = api.get(f"/v1/tasks/{task_id}").json()["error"]
    assert error["code"] == "all_platforms_exhausted" and "timed out" in error["message"]
    codes = Task.objects.get(pk=task_id).attempts.values_list("error_code", flat=True)
    assert list(codes) == ["upstream_timeout"] * 3


def test_unreachable_upstream_fails_with_upstream_error(api, openai_channel):
    openai_channel.base_url = "http://127.0.0.1:9/v1"
    openai_channel.save()
    task_id = submit(api, prompt="nobody home")
    task_run(task_id)
    error = api.get(f"/v1/tasks/{task_id}").json()["error"]
    assert error["code"] == "all_platforms_exhausted" and "connection failed" in error["message"]


@pytest.mark.django_db(transaction=True)  # the task runs on another thread, with its own connection
def test_one_503_on_the_only_channel_is_retried_and_the_task_completes(api, openai_channel, fake_openai):
    fake_openai.configure(status=503)
    task_id = submit(api, prompt="try again")

    def run() -> None:
        try:
            task_run(task_id)
        finally:
            connection.close()  # this thread's own: left open, it would keep the test database busy

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run)
        deadline = time.monotonic() + 10
        while not fake_openai.requests:  # the first call has its 503 fixed when it arrives
            assert time.monotonic() < deadline and not running.done()
            time.sleep(0.01)
        fake_openai.configure(status=None)
        running.result(timeout=30)
    # With the session's stack up, its cluster may have taken the committed task instead of our
    # thread: either way the task must end the same, so wait for it to end.
    deadline = time.monotonic() + 30
    while (body := api.get(f"/v1/tasks/{task_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, "the task did not finish within 30 s"
        time.sleep(0.05)
    assert body["status"] == "completed"
    statuses = list(
        Task.objects.get(pk=task_id).attempts.order_by("number").values_list("http_status", flat=True)
    )
    assert statuses == [503, 200]
    assert LedgerEntry.objects.filter(task_id=task_id, kind="capture").count() == 1


def test_the_channels_api_key_reaches_the_upstream(api, openai_channel, fake_openai):
    fake_openai.configure(api_key="sk-upstream-123")
    openai_channel.api_key = "sk-upstream-123"
    openai_channel.save()
    task_id = submit(api, prompt="authorized")
    task_run(task_id)
    assert api.get(f"/v1/tasks/{task_id}").json()["status"] == "completed"
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-upstream-123"
