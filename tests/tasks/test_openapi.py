import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PUBLIC = {
    ("post", "/v1/llm/generations"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/messages"),
    ("post", "/v1/embeddings"),
    ("get", "/v1/tasks/{task_id}"),
    ("post", "/v1/tasks/{task_id}/cancel"),
    ("get", "/v1/llm/generations/{task_id}/stream"),
    ("get", "/v1/configs/llm_generations_models"),
    ("get", "/v1/models"),
    ("get", "/v1/account/credits"),
}


@pytest.fixture
def spec() -> dict:
    response = APIClient().get("/v1/openapi.json")  # no key needed
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_schema_documents_every_public_endpoint_and_its_errors(spec):
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert documented == PUBLIC
    submit = spec["paths"]["/v1/llm/generations"]["post"]["responses"]
    assert set(submit) >= {"200", "400", "401", "402", "403", "413", "422", "429", "500", "502", "503", "504"}
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(chat) >= {"200", "401", "402", "422", "429", "502", "503", "504"}
    assert {"application/json", "text/event-stream"} <= set(chat["200"]["content"])
    stream = spec["paths"]["/v1/llm/generations/{task_id}/stream"]["get"]["responses"]
    assert "text/event-stream" in stream["200"]["content"] and {"404", "410"} <= set(stream)
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: sk-<key id><secret>",
    }


def test_documented_task_object_matches_a_real_one(spec, api, openai_channel):
    task = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "hi"}, format="json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["TaskSchema"]["properties"]) == set(task)
    assert set(schemas["TaskUsageSchema"]["properties"]) == set(task["usage"])
    credits = api.get("/v1/account/credits").json()
    assert set(schemas["CreditsSchema"]["properties"]) == set(credits)
    assert set(schemas["TenantCreditsSchema"]["properties"]) == set(credits["tenant"])
    assert set(schemas["KeyCreditsSchema"]["properties"]) == set(credits["key"])


def test_documented_request_fields_are_the_accepted_ones(spec):
    from tasks.serializers import GenerationRequestSerializer

    request_schema = spec["components"]["schemas"]["GenerationRequestRequest"]
    assert set(request_schema["properties"]) == set(GenerationRequestSerializer().fields)


def test_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "https://" not in html and "http://" not in html
    script = client.get("/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")
    assert script.status_code == 200
