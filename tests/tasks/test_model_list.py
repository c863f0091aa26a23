from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tasks.models import Channel
from tasks.services import channel_add, price_set
from tenants.models import ModelRuleOverride

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(fake_openai):
    """Three served, priced models; one priced model nobody serves; one served model with no price."""
    for name, caps in [("gpt-4o", None), ("gemini-2.5-pro", None), ("plain", ["text"]), ("orphan", None)]:
        price_set(
            model_name=name, input_per_million=Decimal(1), output_per_million=Decimal(1), capabilities=caps
        )
    channel_add(
        name="main",
        provider="openai",
        base_url=fake_openai.base_url,
        api_key="",
        model_names=["gpt-4o", "gemini-2.5-pro", "plain", "unpriced"],
    )


def listed(api, path: str) -> dict[str, list[str]]:
    response = api.get(path)
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    return {entry["id"]: entry["capabilities"] for entry in response.json()["data"]}


@pytest.mark.parametrize("path", ["/v1/configs/llm_generations_models", "/v1/models"])
def test_lists_exactly_the_servable_models_with_capabilities(api, catalog, path):
    assert listed(api, path) == {
        "gemini-2.5-pro": ["text", "vision", "video", "audio", "tools", "json_schema", "reasoning"],
        "gpt-4o": ["text", "vision", "tools", "json_schema"],  # the gpt-4o family does not reason
        "plain": ["text"],  # its catalog entry says text only: no tools, no structured output, no reasoning
    }


def test_openai_format_entries(api, catalog):
    entry = api.get("/v1/models").json()["data"][0]
    assert set(entry) == {"id", "object", "created", "owned_by", "capabilities"}
    assert entry["object"] == "model" and isinstance(entry["created"], int)


def test_tenant_overrides_hide_disabled_models_and_narrow_capabilities(api, tenant, catalog):
    ModelRuleOverride.objects.create(tenant=tenant, model_pattern="gpt-*", disabled=True)
    ModelRuleOverride.objects.create(tenant=tenant, model_pattern="gemini-*", max_images=0)
    assert listed(api, "/v1/models") == {
        "gemini-2.5-pro": ["text", "video", "audio", "tools", "json_schema", "reasoning"],
        "plain": ["text"],
    }


def test_other_tenants_overrides_do_not_apply(api, outsider_key, catalog):
    ModelRuleOverride.objects.create(tenant=outsider_key.api_key.tenant, model_pattern="*", disabled=True)
    assert len(listed(api, "/v1/models")) == 3
    outsider = APIClient()
    outsider.credentials(HTTP_AUTHORIZATION=f"Bearer {outsider_key.secret}")
    assert listed(outsider, "/v1/models") == {}


def test_disabled_channel_takes_its_models_off_the_list(api, catalog):
    Channel.objects.update(enabled=False)
    assert listed(api, "/v1/models") == {}
