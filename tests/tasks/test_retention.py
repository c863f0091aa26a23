"""Content retention: after FOXGATE_CONTENT_RETENTION_DAYS the retention job erases what tasks were asked
and answered, keeping their rows, usage, charges and ledger; a tenant that stores no content never has its
prompts readable in the database."""

from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from tasks.jobs import content_prune_job, task_run
from tasks.models import StreamChunk, Task
from tenants.models import LedgerEntry, Tenant
from tests.helpers import database_dump, run_command
from tests.tenants.writes import admin_client

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "the launch code is 7-alpha-zulu"


def submit(api, prompt: str, **body) -> str:
    answer = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": prompt, **body}, format="json")
    assert answer.status_code == 200, answer.json()
    task_run(answer.json()["id"])
    return answer.json()["id"]


def ended_ago(task_id: str, **ago: float) -> None:
    Task.objects.filter(pk=task_id).update(finished_at=timezone.now() - timedelta(**ago))


def test_the_retention_job_erases_old_content_and_keeps_the_books(api, openai_channel, settings):
    settings.CONTENT_RETENTION_DAYS = 30
    old, recent = submit(api, SECRET_PROMPT), submit(api, "a recent prompt")
    StreamChunk.objects.create(task_id=old, seq=0, data='{"choices": [{"delta": {"content": "Echo: the"}}]}')
    ended_ago(old, days=31)
    kept = Task.objects.get(pk=old)
    lines = LedgerEntry.objects.filter(task_id=old).count()
    assert SECRET_PROMPT in database_dump() and StreamChunk.objects.filter(task_id=old).exists()

    assert content_prune_job() == 1
    dump = database_dump()
    assert SECRET_PROMPT not in dump and "a recent prompt" in dump  # the recent one is kept
    task = Task.objects.get(pk=old)
    assert task.content_pruned_at is not None and task.request["messages"] == []
    assert (
        task.result["usage"] == kept.result["usage"]
        and task.result["choices"][0]["message"]["content"] is None
    )
    assert (task.credits_charged, task.charge_basis) == (kept.credits_charged, kept.charge_basis)
    assert not StreamChunk.objects.filter(task_id=old).exists()
    assert LedgerEntry.objects.filter(task_id=old).count() == lines
    shown = api.get(f"/v1/tasks/{old}").json()
    assert shown["status"] == "completed" and shown["usage"]["credits_charged"] is not None
    page = admin_client().get(f"/admin/tasks/task/{old}/change/").content.decode()
    assert "erased at" in page and SECRET_PROMPT not in page
    assert "books balance" in run_command("billing_audit")
    assert content_prune_job() == 0  # nothing left to erase
    assert Task.objects.get(pk=recent).content_pruned_at is None


def test_a_tenant_that_stores_no_content_never_has_a_readable_prompt(api, openai_channel, tenant, settings):
    Tenant.objects.filter(pk=tenant.pk).update(store_content=False)
    answer = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": SECRET_PROMPT}, format="json")
    task_id = answer.json()["id"]
    assert "launch code" not in database_dump()  # sealed while it waits
    task_run(task_id)
    shown = api.get(f"/v1/tasks/{task_id}").json()
    assert shown["results"][0]["choices"][0]["message"]["content"] == f"Echo: {SECRET_PROMPT}"
    assert "launch code" not in database_dump()
    assert content_prune_job() == 0  # the caller may still fetch it, within the stream window

    settings.STREAM_RETENTION_SECONDS = 0  # the window has passed
    assert content_prune_job() == 1
    task = Task.objects.get(pk=task_id)
    assert task.content_pruned_at is not None and task.request["messages"] == []
    assert api.get(f"/v1/tasks/{task_id}").json()["results"][0]["usage"]["total_tokens"] > 0
    assert "launch code" not in database_dump()
    assert "books balance" in run_command("billing_audit")


@pytest.mark.e2e
def test_a_sync_answer_of_a_tenant_that_stores_no_content_arrives_and_leaves_no_prompt(stack, stack_api):
    Tenant.objects.filter(slug="e2e").update(store_content=False)
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    with openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=secret, max_retries=0) as client:
        messages = [{"role": "user", "content": SECRET_PROMPT}]
        answer = client.chat.completions.create(model="fake-model", messages=messages)
    assert answer.choices[0].message.content == f"Echo: {SECRET_PROMPT}"
    assert "launch code" not in database_dump()


@pytest.mark.e2e
def test_a_stream_of_a_tenant_that_stores_no_content_is_stored_sealed(stack, stack_api):
    Tenant.objects.filter(slug="e2e").update(store_content=False)
    submitted = stack_api.post(
        "/v1/llm/generations", json={"model": "fake-model", "prompt": SECRET_PROMPT, "stream": True}
    ).json()
    with stack_api.stream("GET", submitted["stream"]["url"]) as stream:
        text = "".join(stream.iter_text())
    assert "launch" in text and "event: done" in text  # the caller's stream carries the answer
    assert StreamChunk.objects.filter(task_id=submitted["id"]).exists()
    assert "launch" not in database_dump()  # its stored chunks (the answer echoes the prompt) are sealed
    replay = stack_api.get(submitted["stream"]["url"], params={"offset": 0}).text
    assert "launch" in replay  # a replay from the stored chunks opens them
