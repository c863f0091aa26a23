"""Opening a task in the admin never makes the operator's browser fetch a caller's media URL."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.helpers import PNG_DATA_URI

pytestmark = pytest.mark.django_db

PIXEL = "http://tracker.example/pixel.png?who=operator"
INTERNAL = "http://10.0.0.5/" + "internal/" * 30  # longer than the page's 120-character cut


def test_a_tasks_image_urls_are_shown_as_text_never_loaded(api, openai_channel):
    body = {
        "model": "fake-model",
        "prompt": "What is in these?",
        "image_urls": [PIXEL, INTERNAL, PNG_DATA_URI],
    }
    task_id = api.post("/v1/llm/generations", body, format="json").json()["id"]
    client = Client()
    client.force_login(User.objects.create_superuser("root", email="", password=None))
    html = client.get(f"/admin/tasks/task/{task_id}/change/").content.decode()

    assert "What is in these?" in html
    assert PIXEL in html  # the operator can still read the URL
    assert INTERNAL[:100] in html and INTERNAL not in html  # truncated
    assert f"inline data ({len(PNG_DATA_URI)} chars)" in html and PNG_DATA_URI[:40] not in html
    # nothing the browser loads or follows by itself: no element carries a caller's URL as an attribute
    for url in (PIXEL, INTERNAL[:40], "data:image/png"):
        attributes = re.findall(
            r"""\b(?:src|href|srcset|poster|data|background)\s*=\s*["']?([^"'\s>]*)""", html
        )
        assert not [value for value in attributes if url in value.replace("&amp;", "&")], url
    assert "<img" not in html
