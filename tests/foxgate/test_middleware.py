"""The middleware chain under ASGI (Django's async handler, as uvicorn runs it): the API skips the admin's
middleware, the admin keeps its sessions and CSRF protection, static files are still served."""

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from tenants.authentication import key_cache

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_api_answer_keeps_its_security_headers_and_request_id_and_sets_no_cookie(issued_key) -> None:
    key_cache.clear()
    response = async_to_sync(AsyncClient().get)(
        "/v1/tasks/task-llmrouter-1-abcdefgh",
        headers={"Authorization": f"Bearer {issued_key.secret}", "X-Request-Id": "mine-1"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"
    assert response["X-Request-Id"] == "mine-1"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert not response.cookies  # no session, no CSRF cookie: the API is key-authenticated


def test_the_admin_sign_in_still_refuses_a_post_without_its_csrf_token() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    page = async_to_sync(client.get)("/admin/login/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies

    refused = async_to_sync(client.post)("/admin/login/", {"username": "a", "password": "b"})

    assert refused.status_code == 403


def test_the_admin_sign_in_with_its_csrf_token_reaches_the_form(django_user_model) -> None:
    django_user_model.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client = AsyncClient(enforce_csrf_checks=True)
    page = async_to_sync(client.get)("/admin/login/")
    token = page.cookies["csrftoken"].value

    signed_in = async_to_sync(client.post)(
        "/admin/login/",
        {"username": "root", "password": "a-long-password-1", "csrfmiddlewaretoken": token},
    )

    assert signed_in.status_code == 302
    assert "sessionid" in signed_in.cookies  # the session middleware ran and saved the sign-in


def test_static_files_are_served_from_the_app() -> None:
    response = async_to_sync(AsyncClient().get)("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])
