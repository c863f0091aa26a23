"""The real processes over real HTTP: uvicorn, the django-q2 cluster and the fake provider."""

from decimal import Decimal

import httpx
import pytest
from openai.types.chat import ChatCompletion

from tests.helpers import poll_until_finished, upstream_requests

pytestmark = pytest.mark.e2e


def test_text_and_vision_tasks_complete_through_the_worker_cluster(stack, stack_api):
    text = stack_api.post("/v1/llm/generations", json={"model": "fake-model", "prompt": "Hello e2e"})
    vision = stack_api.post(
        "/v1/llm/generations",
        json={"model": "fake-model", "prompt": "Look", "image_urls": ["https://example.com/cat.png"]},
    )
    assert text.status_code == vision.status_code == 200
    assert text.headers["X-Request-Id"]

    text_task = poll_until_finished(stack_api, text.json()["id"])
    vision_task = poll_until_finished(stack_api, vision.json()["id"])

    assert text_task["status"] == "completed", text_task
    assert (
        ChatCompletion.model_validate(text_task["results"][0]).choices[0].message.content == "Echo: Hello e2e"
    )
    assert vision_task["status"] == "completed", vision_task
    vision_completion = ChatCompletion.model_validate(vision_task["results"][0])
    assert vision_completion.choices[0].message.content == "Echo: Look [images: 1]"
    assert Decimal(text_task["usage"]["credits_charged"]) > 0
    assert len(upstream_requests(stack)) == 2


def test_web_process_answers_bad_keys_and_bad_json_with_the_envelope(stack, stack_api):
    missing = httpx.get(f"{stack.web_url}/v1/tasks/anything")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    bad_json = stack_api.post(
        "/v1/llm/generations", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
