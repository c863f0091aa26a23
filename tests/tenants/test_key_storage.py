import pytest

from tasks.models import Task
from tests.helpers import database_dump, run_command


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


@pytest.mark.django_db
def test_rotatesecrets_moves_every_stored_secret_to_the_newest_key(settings, fake_openai):
    """After `rotatesecrets` the old key can be dropped: upstream keys, webhook and callback secrets still
    read."""
    from cryptography.fernet import Fernet

    from tasks.models import Channel
    from tasks.services import channel_add
    from tenants.alerts import webhook_endpoint_add
    from tenants.models import Tenant, WebhookEndpoint
    from tenants.services import callback_secret, tenant_create

    settings.ALLOW_PRIVATE_WEBHOOKS = True
    channel_add(
        name="openai", provider="openai", base_url=fake_openai.base_url, api_key="sk-up", model_names=["m"]
    )
    tenant = tenant_create(slug="hooks")
    secret = webhook_endpoint_add(tenant=tenant, url="https://127.0.0.1/hook").secret
    signing = callback_secret(tenant)
    assert signing not in database_dump()
    newest = Fernet.generate_key().decode()
    settings.SECRET_KEYS = [newest, *settings.SECRET_KEYS]
    assert "re-encrypted 1 channel API keys, 1 webhook secrets, 1 callback secrets" in run_command(
        "rotatesecrets"
    )
    settings.SECRET_KEYS = [newest]
    assert Channel.objects.get().api_key == "sk-up" and WebhookEndpoint.objects.get().secret == secret
    assert callback_secret(Tenant.objects.get(pk=tenant.pk)) == signing
