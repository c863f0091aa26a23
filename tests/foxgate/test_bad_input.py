"""Bad input is a clear 4xx in the error envelope: never a 500, an HTML page or a dropped body."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from django.test import override_settings

from tests.foxgate.test_error_envelope import assert_envelope
from tests.helpers import poll_until_finished

LIMIT = 20 * 1024 * 1024  # FOXGATE_MAX_REQUEST_BYTES's default, which the stack runs with
BIG_BODY = b'{"model": "fake-model", "prompt": "' + b"x" * (25 * 1024 * 1024) + b'"}'


def pieces(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body httpx sends chunked (Transfer-Encoding: chunked, no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-Id"]
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("request_too_large", "invalid_request_error")
    assert str(LIMIT) in error["message"]


@pytest.mark.e2e
def test_a_chunked_submit_is_read_and_its_task_runs(stack, stack_api):
    body = json.dumps({"model": "fake-model", "prompt": "sent in pieces " + "y" * 60_000}).encode()
    response = stack_api.post(
        "/v1/llm/generations",
        content=pieces(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    task = poll_until_finished(stack_api, response.json()["id"])
    assert task["status"] == "completed", task
    assert task["results"][0]["choices"][0]["message"]["content"].startswith("Echo: sent in pieces yyy")


@pytest.mark.e2e
def test_a_25_mb_body_is_413_with_content_length(stack, stack_api):
    response = stack_api.post(
        "/v1/llm/generations", content=BIG_BODY, headers={"Content-Type": "application/json"}
    )
    assert_too_large(response)


@pytest.mark.e2e
def test_a_25_mb_body_is_413_sent_chunked(stack, stack_api):
    response = stack_api.post(
        "/v1/llm/generations", content=pieces(BIG_BODY), headers={"Content-Type": "application/json"}
    )
    assert_too_large(response)
    # The web server still answers the next request normally.
    assert stack_api.get("/v1/account/credits").status_code == 200


@pytest.mark.e2e
def test_a_body_just_under_the_limit_is_not_refused_for_its_size(stack, stack_api):
    prompt = "z" * (LIMIT - 100)
    body = json.dumps({"model": "fake-model", "prompt": prompt}).encode()
    assert len(body) <= LIMIT
    for content in (body, pieces(body)):
        response = stack_api.post(
            "/v1/llm/generations", content=content, headers={"Content-Type": "application/json"}
        )
        # Read whole, and judged on its content: the prompt is longer than a prompt may be.
        assert response.status_code == 422, response.text[:300]
        assert response.json()["error"]["param"] == "prompt"


@pytest.mark.django_db
def test_a_body_over_the_limit_is_413_through_django_too(api):
    response = api.generic("POST", "/v1/llm/generations", BIG_BODY, content_type="application/json")
    assert_envelope(response, 413, "invalid_request_error", "request_too_large")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"model": "fake-model", "model": "other", "prompt": "hi"}', "model"),
        (
            '{"model": "fake-model", "messages": [{"role": "user", "content": "a", "content": "b"}]}',
            "content",
        ),
        ('{"model": "fake-model", "prompt": "hi", "metadata": {"x": {"deep": 1, "deep": 2}}}', "deep"),
    ],
)
def test_a_repeated_json_key_at_any_depth_is_400_invalid_json_naming_it(api, openai_channel, body, key):
    response = api.generic("POST", "/v1/llm/generations", body, content_type="application/json")
    error = assert_envelope(response, 400, "invalid_request_error", "invalid_json")
    assert f"'{key}'" in error["message"] and error["param"] == key


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/v1/tasks/task-llmrouter-1-abc%00defg",
        "/v1/tasks/%00",
        "/v1/tasks/%FF%FE",
        "/v1/tasks/" + "a" * 5000,
        "/v1/tasks/task-llmrouter-1-abcdefgh%0A",
        "/v1/llm/generations/task-llmrouter-1-abc%00defg/stream",
        "/v1/llm/generations/%C0%AF/stream",
    ],
)
def test_a_task_id_that_cannot_be_one_is_404_task_not_found(api, path):
    assert_envelope(api.get(path), 404, "not_found", "task_not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-\x00model", "prompt": "hi"}, "model"),
        ({"model": "fake-model", "prompt": "h\x00i"}, "prompt"),
        (
            {"model": "fake-model", "prompt": "hi", "image_urls": ["https://a/b.png", "x\x00"]},
            "image_urls[1]",
        ),
    ],
)
def test_a_nul_character_in_the_body_is_422_naming_the_field(api, openai_channel, body, param):
    response = api.post("/v1/llm/generations", body, format="json")
    error = assert_envelope(response, 422, "invalid_request_error", "invalid_param")
    assert error["param"] == param


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_no_debug_page_reaches_an_api_client_even_with_debug_on(api, monkeypatch):
    # Django refuses a Host not in ALLOWED_HOSTS itself, before any API view runs.
    bad_host = api.get("/v1/models", HTTP_HOST="evil.example")
    assert_envelope(bad_host, 400, "invalid_request_error", "bad_request")

    # A failure in a middleware, outside any view: Django's debug page with DEBUG on.
    def explode(self, request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("django.middleware.common.CommonMiddleware.process_request", explode)
    api.raise_request_exception = False  # answer as a server would, rather than raise into the test
    crashed = api.get("/v1/models")
    assert_envelope(crashed, 500, "server_error", "internal_error")
    assert "secret internals" not in crashed.content.decode()
    assert crashed["X-Request-Id"] in crashed.json()["error"]["message"]


LOG_ONE_REFUSAL = """
import django
django.setup()
from django.test import Client
Client().get("/v1/models")  # no key: 401
"""


def test_a_refused_request_is_logged_once_even_with_debug_on():
    # A process of its own: logging is configured once per process, from the settings.
    run = subprocess.run(
        [sys.executable, "-c", LOG_ONE_REFUSAL],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "foxgate.settings", "FOXGATE_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "/v1/models" in line]
    assert len(lines) == 1, lines
    assert "WARNING django.request" in lines[0] and "Unauthorized" in lines[0]
