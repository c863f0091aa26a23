"""Key rules enforced at authentication and admission: rotation, allow-lists, peppers, last use."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.authentication import key_authenticate, key_cache
from tenants.models import ApiKey, Tenant
from tenants.services import apikey_issue, apikey_revoke, apikey_rotate

pytestmark = pytest.mark.django_db


def client_for(secret: str, ip: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_rotation_keeps_the_old_secret_working_only_for_the_grace_period(tenant):
    old = apikey_issue(tenant=tenant)
    new = apikey_rotate(api_key=old.api_key, grace=timedelta(minutes=5))
    assert new.secret != old.secret and new.api_key.key_id == old.api_key.key_id
    assert client_for(new.secret).get("/v1/models").status_code == 200
    assert client_for(old.secret).get("/v1/models").status_code == 200

    ApiKey.objects.filter(pk=old.api_key.pk).update(previous_expires_at=timezone.now() - timedelta(seconds=1))
    key_cache.clear()
    assert error_of(client_for(old.secret).get("/v1/models")) == (401, "invalid_api_key")
    assert client_for(new.secret).get("/v1/models").status_code == 200


def test_rotation_with_no_grace_cuts_the_old_secret_at_once(tenant):
    old = apikey_issue(tenant=tenant)
    apikey_rotate(api_key=old.api_key, grace=timedelta(0))
    assert error_of(client_for(old.secret).get("/v1/models")) == (401, "invalid_api_key")


def test_model_allow_list_refuses_and_hides_other_models(tenant, openai_channel):
    from tasks.services import channel_add, price_set

    price_set(model_name="gpt-4o-mini", input_per_million=1, output_per_million=1)
    channel_add(
        name="c2",
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="",
        model_names=["gpt-4o-mini"],
    )
    client = client_for(apikey_issue(tenant=tenant, allowed_models=["gpt-4o*"]).secret)

    refused = client.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
    assert error_of(refused) == (403, "model_not_allowed") and refused.json()["error"]["param"] == "model"
    allowed = client.post("/v1/llm/generations", {"model": "gpt-4o-mini", "prompt": "x"}, format="json")
    assert allowed.status_code == 200
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["gpt-4o-mini"]


@pytest.mark.parametrize(
    ("allowed", "ip", "status"),
    [
        (["10.0.0.0/8"], "10.1.2.3", 200),
        (["10.0.0.0/8"], "192.168.1.1", 403),
        (["203.0.113.7"], "203.0.113.7", 200),
        (["2001:db8::/32"], "2001:db8::1", 200),
        (["2001:db8::/32"], "10.1.2.3", 403),
    ],
)
def test_ip_allow_list(tenant, allowed, ip, status):
    response = client_for(apikey_issue(tenant=tenant, allowed_ips=allowed).secret, ip=ip).get("/v1/models")
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "ip_not_allowed"


def test_suspended_tenant_is_403(tenant, issued_key):
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert error_of(client_for(issued_key.secret).get("/v1/models")) == (403, "tenant_suspended")


def test_peppers_rotate_without_breaking_existing_keys(tenant, settings):
    settings.API_KEY_PEPPERS = {"1": "first-pepper"}
    settings.API_KEY_PEPPER_ID = "1"
    old = apikey_issue(tenant=tenant)

    settings.API_KEY_PEPPERS = {"1": "first-pepper", "2": "second-pepper"}
    settings.API_KEY_PEPPER_ID = "2"
    new = apikey_issue(tenant=tenant)
    assert (old.api_key.pepper_id, new.api_key.pepper_id) == ("1", "2")
    assert key_authenticate(old.secret).pk == old.api_key.pk
    assert key_authenticate(new.secret).pk == new.api_key.pk

    settings.API_KEY_PEPPERS = {"2": "second-pepper"}  # pepper 1 retired: its keys stop working
    key_cache.clear()
    with pytest.raises(Exception, match="Invalid API key"):
        key_authenticate(old.secret)


def test_last_used_is_written_at_most_once_a_minute(tenant, issued_key):
    client = client_for(issued_key.secret)
    client.get("/v1/models")
    first = ApiKey.objects.get(pk=issued_key.api_key.pk).last_used_at
    assert first is not None
    client.get("/v1/models")
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).last_used_at == first

    ApiKey.objects.filter(pk=issued_key.api_key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    key_cache.clear()
    client.get("/v1/models")
    assert ApiKey.objects.get(pk=issued_key.api_key.pk).last_used_at > first


def test_a_cached_key_is_refused_once_revoked_within_the_cache_time(tenant, issued_key, settings):
    settings.KEY_CACHE_SECONDS = 0.5
    client = client_for(issued_key.secret)
    assert client.get("/v1/models").status_code == 200  # now cached in this process
    apikey_revoke(api_key=issued_key.api_key)
    time.sleep(0.6)
    assert error_of(client.get("/v1/models")) == (401, "invalid_api_key")
