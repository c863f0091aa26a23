import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_owner_reads_its_task(api, openai_channel):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi"}, format="json").json()[
        "id"
    ]
    response = api.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200
    assert response.json()["id"] == task_id


def test_other_tenants_task_is_404_like_a_missing_one(api, outsider_key, openai_channel):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi"}, format="json").json()[
        "id"
    ]
    outsider = APIClient()
    outsider.credentials(HTTP_AUTHORIZATION=f"Bearer {outsider_key.secret}")
    theirs = outsider.get(f"/v1/tasks/{task_id}")
    missing = outsider.get("/v1/tasks/task-llmrouter-1-zzzzzzzz")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.json()["error"]["code"] == "task_not_found"
