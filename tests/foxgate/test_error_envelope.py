"""One error envelope for every failure under /v1/."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def assert_envelope(response, status: int, error_type: str, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert (error["type"], error["code"]) == (error_type, code)
    return error


@pytest.mark.parametrize("method", ["get", "post", "put", "delete", "patch"])
def test_unknown_routes_are_404_in_the_envelope_with_or_without_a_key(api, method):
    assert_envelope(getattr(api, method)("/v1/no/such/thing"), 404, "not_found", "not_found")
    assert_envelope(getattr(APIClient(), method)("/v1/llm"), 404, "not_found", "not_found")


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/v1/llm/generations"), ("delete", "/v1/tasks/x"), ("post", "/v1/models")]
)
def test_wrong_method_is_405_in_the_envelope(api, method, path):
    response = getattr(api, method)(path)
    assert_envelope(response, 405, "invalid_request_error", "method_not_allowed")
    assert response["Allow"]


def test_unhandled_exception_is_500_with_the_request_id_and_no_traceback(api, openai_channel, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("secret internals: /etc/passwd")

    monkeypatch.setattr("tasks.views.task_submit", explode)
    response = api.post(
        "/v1/llm/generations",
        {"model": "fake-model", "prompt": "x"},
        format="json",
        HTTP_X_REQUEST_ID="req-trace-me",
    )
    error = assert_envelope(response, 500, "server_error", "internal_error")
    assert "req-trace-me" in error["message"]
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
