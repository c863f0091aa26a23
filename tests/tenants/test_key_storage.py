import pytest

from tasks.models import Task
from tests.helpers import database_dump


@pytest.mark.django_db
def test_key_secret_appears_nowhere_in_the_database(api, issued_key, openai_channel):
    submitted = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi"}, format="json")
    assert submitted.status_code == 200
    assert Task.objects.count() == 1
    dump = database_dump()
    assert issued_key.api_key.key_id in dump  # the dump does hold the key's row
    secret_part = issued_key.secret.removeprefix("sk-" + issued_key.api_key.key_id)
    assert secret_part not in dump
    assert issued_key.secret not in dump


@pytest.mark.django_db
def test_upstream_api_keys_are_encrypted_at_rest(fake_openai):
    from tasks.models import Channel
    from tasks.services import channel_add

    upstream_secret = "sk-proj-UPSTREAM-very-secret-0123456789"
    channel_add(
        name="openai",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key=upstream_secret,
        model_names=["gpt-4o"],
    )
    assert upstream_secret not in database_dump()
    assert Channel.objects.get(name="openai").api_key == upstream_secret  # the relay can still read it
