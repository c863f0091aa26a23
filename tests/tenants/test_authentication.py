from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiKey

pytestmark = pytest.mark.django_db


def get_task(client: APIClient, authorization: str | None = None):
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get("/v1/tasks/task-llmrouter-1-abcdefgh")


def assert_unauthorized(response, code: str) -> None:
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "authentication_error",
            "code": code,
            "param": None,
        }
    }
    assert response["WWW-Authenticate"] == "Bearer"


def test_missing_key_is_401_missing_api_key():
    assert_unauthorized(get_task(APIClient()), "missing_api_key")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer sk-", "Bearer not-a-key", "Bearer sk-short", "Bearer a b"],
)
def test_malformed_key_is_401_invalid_api_key(authorization):
    assert_unauthorized(get_task(APIClient(), authorization), "invalid_api_key")


def test_unknown_key_id_and_wrong_secret_look_the_same(issued_key):
    api_key = issued_key.api_key
    unknown = get_task(APIClient(), f"Bearer sk-{'z' * 12}{'x' * 43}")
    wrong_secret = get_task(APIClient(), f"Bearer sk-{api_key.key_id}{'x' * 43}")
    assert_unauthorized(unknown, "invalid_api_key")
    assert_unauthorized(wrong_secret, "invalid_api_key")
    assert unknown.json() == wrong_secret.json()


def test_valid_key_reaches_the_view(issued_key):
    response = get_task(APIClient(), f"Bearer {issued_key.secret}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


def test_revoked_key_is_refused_like_an_unknown_one(issued_key):
    ApiKey.objects.filter(pk=issued_key.api_key.pk).update(revoked_at=timezone.now())
    assert_unauthorized(get_task(APIClient(), f"Bearer {issued_key.secret}"), "invalid_api_key")


def test_expired_key_is_401_expired_api_key(issued_key):
    ApiKey.objects.filter(pk=issued_key.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_unauthorized(get_task(APIClient(), f"Bearer {issued_key.secret}"), "expired_api_key")


def test_every_response_carries_a_request_id(issued_key):
    client = APIClient()
    assert get_task(client)["X-Request-Id"].startswith("req_")
    echoed = client.get("/v1/tasks/x", HTTP_X_REQUEST_ID="client-chosen-42")
    assert echoed["X-Request-Id"] == "client-chosen-42"
