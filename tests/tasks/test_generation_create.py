import re
from decimal import Decimal

import pytest

from tasks.models import Task
from tenants.models import LedgerEntry, Tenant
from tests.helpers import PNG_DATA_URI

pytestmark = pytest.mark.django_db


def submit(api, body, **kwargs):
    return api.post("/v1/llm/generations", body, format="json", **kwargs)


def test_text_submit_returns_the_pending_task_object(api, openai_channel):
    response = submit(api, {"model": "fake-model", "prompt": "Hello"})
    assert response.status_code == 200
    task = response.json()
    assert re.fullmatch(r"task-llmrouter-\d{10}-[a-z0-9]{8}", task["id"])
    assert response["X-Task-Id"] == task["id"]
    reserved = task["usage"].pop("credits_reserved")
    assert Decimal(reserved) > 0
    assert task == {
        "id": task["id"],
        "object": "llm.generation.task",
        "type": "llm",
        "model": "fake-model",
        "status": "pending",
        "progress": 0,
        "can_cancel": True,
        "created": task["created"],
        "stream": None,
        "results": None,
        "error": None,
        "usage": {"credits_charged": None, "user_group": "default"},
    }


def test_vision_submit_stores_images_as_content_parts(api, openai_channel):
    body = {
        "model": "fake-model",
        "prompt": "What is in these?",
        "system_prompt": "Be brief.",
        "image_urls": ["https://example.com/cat.png", PNG_DATA_URI],
    }
    response = submit(api, body)
    assert response.status_code == 200
    task = Task.objects.get(pk=response.json()["id"])
    assert task.protocol == "vision"
    assert task.request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URI}},
            ],
        },
    ]


def test_submit_holds_the_worst_case_cost(api, tenant, openai_channel):
    response = submit(api, {"model": "fake-model", "prompt": "x" * 30, "max_tokens": 1000})
    reserved = Decimal(response.json()["usage"]["credits_reserved"])
    # 30 chars ≈ 10 input tokens at 1/M, plus 1000 output tokens at 2/M.
    assert reserved == Decimal("0.00201")
    tenant.refresh_from_db()
    assert tenant.held == reserved and tenant.balance == Decimal(100)
    hold = LedgerEntry.objects.get(kind=LedgerEntry.Kind.HOLD)
    assert hold.held_change == reserved and hold.amount == 0 and hold.task_id == response.json()["id"]


def test_submit_refuses_what_the_tenant_cannot_cover(api, tenant, openai_channel):
    Tenant.objects.filter(pk=tenant.pk).update(balance=Decimal("0.001"))
    response = submit(api, {"model": "fake-model", "prompt": "hi", "max_tokens": 1000})
    assert response.status_code == 402
    assert response.json()["error"]["type"] == "insufficient_quota"
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert not Task.objects.exists()
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD).exists()


def test_non_json_body_is_400_invalid_json(api, openai_channel):
    response = api.post("/v1/llm/generations", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] | {"message": None} == {
        "message": None,
        "type": "invalid_request_error",
        "code": "invalid_json",
        "param": None,
    }


def test_unknown_model_is_422_model_not_found(api, openai_channel):
    response = submit(api, {"model": "no-such-model", "prompt": "hi"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["param"] == "model"


def test_unpriced_model_is_refused_not_free(api, fake_openai):
    from tasks.services import channel_add

    channel_add(
        name="c", provider="openai", base_url=fake_openai.base_url, api_key="", model_names=["free-lunch"]
    )
    response = submit(api, {"model": "free-lunch", "prompt": "hi"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "model_not_found"
    assert "no price" in response.json()["error"]["message"]


def test_model_without_channel_is_503(api, priced_model):
    response = submit(api, {"model": "fake-model", "prompt": "hi"})
    assert response.status_code == 503
    assert response.json()["error"] == {
        "message": response.json()["error"]["message"],
        "type": "service_unavailable_error",
        "code": "no_available_channel",
        "param": None,
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi"}, "model"),
        ({"model": "fake-model"}, "prompt"),
        ({"model": "fake-model", "prompt": "hi", "colour": "red"}, "colour"),
        ({"model": "fake-model", "prompt": "hi", "temperature": 3}, "temperature"),
        ({"model": "fake-model", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"model": "fake-model", "prompt": "hi", "image_urls": ["ftp://x/y.png"]}, "image_urls[0]"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(api, openai_channel, body, param):
    response = submit(api, body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"invalid_param", "invalid_image_url"}
    assert response.json()["error"]["param"] == param
