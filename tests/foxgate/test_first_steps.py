"""What a newcomer meets first: the server's front page, signing in, the API docs page, quiet logs."""

import logging
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_q.tasks import async_task


def test_front_page_points_to_the_docs_and_the_admin():
    response = Client().get("/")
    assert response.status_code == 200
    assert 'href="/v1/docs"' in response.text and 'href="/admin/"' in response.text


@pytest.mark.django_db
def test_signing_in_at_the_admin_login_lands_in_the_admin():
    User.objects.create_user("ops", password="a long password", is_staff=True)
    client = Client()
    # As a password manager or a script posts it: no `next` field.
    response = client.post("/admin/login/", {"username": "ops", "password": "a long password"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_api_docs_page_loads_nothing_from_another_origin():
    client = Client()
    page = client.get("/v1/docs")
    assert page.status_code == 200
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert references, page.text
    assert [url for url in references if re.match(r"(https?:)?//", url)] == []
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts and all(client.get(src).status_code == 200 for src in scripts)


@pytest.mark.django_db
def test_the_queue_does_not_log_every_job_at_info(caplog):
    with caplog.at_level(logging.INFO):
        async_task("math.floor", 1.5)
    assert [record.getMessage() for record in caplog.records if record.name == "django-q"] == []
