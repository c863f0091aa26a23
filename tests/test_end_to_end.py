"""The real processes over real HTTP: uvicorn, the django-q2 cluster and the fake provider."""

import time
from decimal import Decimal

import httpx
import pytest
from openai.types.chat import ChatCompletion

from tasks.services import channel_add, price_set
from tenants.services import apikey_issue, tenant_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def poll_until_finished(client: httpx.Client, task_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still {task['status']} after {timeout}s")


@pytest.fixture
def client(stack):
    tenant = tenant_create(slug="e2e", credits=Decimal(10))
    price_set(model_name="fake-model", input_per_million=Decimal(1), output_per_million=Decimal(2))
    channel_add(
        name="fake",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=["fake-model"],
    )
    secret = apikey_issue(tenant=tenant).secret
    with httpx.Client(
        base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}, timeout=10
    ) as client:
        yield client


def test_text_and_vision_tasks_complete_through_the_worker_cluster(stack, client):
    text = client.post("/v1/llm/generations", json={"model": "fake-model", "prompt": "Hello e2e"})
    vision = client.post(
        "/v1/llm/generations",
        json={"model": "fake-model", "prompt": "Look", "image_urls": ["https://example.com/cat.png"]},
    )
    assert text.status_code == vision.status_code == 200
    assert text.headers["X-Request-Id"]

    text_task = poll_until_finished(client, text.json()["id"])
    vision_task = poll_until_finished(client, vision.json()["id"])

    assert text_task["status"] == "completed", text_task
    assert (
        ChatCompletion.model_validate(text_task["results"][0]).choices[0].message.content == "Echo: Hello e2e"
    )
    assert vision_task["status"] == "completed", vision_task
    vision_completion = ChatCompletion.model_validate(vision_task["results"][0])
    assert vision_completion.choices[0].message.content == "Echo: Look [images: 1]"
    assert Decimal(text_task["usage"]["credits_charged"]) > 0

    received = httpx.get(f"{stack.fake_url}/_fake/requests").json()
    assert len([r for r in received if r["path"] == "/v1/chat/completions"]) == 2


def test_web_process_answers_bad_keys_and_bad_json_with_the_envelope(stack, client):
    missing = httpx.get(f"{stack.web_url}/v1/tasks/anything")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    bad_json = client.post(
        "/v1/llm/generations", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
