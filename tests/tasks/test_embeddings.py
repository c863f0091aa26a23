"""POST /v1/embeddings with the official openai SDK against the running stack: one task per request, priced
per input token, served by an OpenAI-compatible and a Gemini channel of an embedding model."""

import base64
import struct
from decimal import Decimal

import httpx
import openai
import pytest

from foxgate.fakes.gemini import FakeGemini
from tasks.models import Model, Task
from tasks.services import channel_add, price_set
from tests.helpers import embedding_model, run_command

pytestmark = pytest.mark.e2e

MODELS = ("fake-embedding", "gemini-embedding-001")  # OpenAI-compatible, Gemini


@pytest.fixture
def sdk(stack, stack_api):
    secret = stack_api.headers["Authorization"].removeprefix("Bearer ")
    embedding_model(stack)
    with (
        FakeGemini(api_key="AIza-test") as gemini,
        openai.OpenAI(base_url=f"{stack.web_url}/v1", api_key=secret, max_retries=0) as client,
    ):
        price_set(
            model_name="gemini-embedding-001",
            input_per_million=Decimal(1),
            output_per_million=Decimal(0),
            kind=Model.Kind.EMBEDDING,
        )
        channel_add(
            name="gemini", provider="gemini", base_url=gemini.base_url, api_key="AIza-test",
            model_names=["gemini-embedding-001"],
        )  # fmt: skip
        client.api, client.gemini = stack_api, gemini
        yield client


@pytest.mark.parametrize("model", MODELS)
def test_embeddings_create_answers_a_vector_per_input_and_charges_its_tokens(sdk, model):
    raw = sdk.embeddings.with_raw_response.create(model=model, input=["first text", "a second, longer text"])
    answer = raw.parse()  # the SDK asks for base64 and decodes it
    assert [item.index for item in answer.data] == [0, 1]
    assert all(len(item.embedding) == 8 and isinstance(item.embedding[0], float) for item in answer.data)
    assert answer.data[0].embedding != answer.data[1].embedding
    assert answer.usage.prompt_tokens > 0
    task = sdk.api.get(f"/v1/tasks/{raw.headers['X-Task-Id']}").json()
    assert task["status"] == "completed"
    assert Decimal(task["usage"]["credits_charged"]) == Decimal(answer.usage.prompt_tokens) / 1_000_000
    assert Task.objects.get(pk=raw.headers["X-Task-Id"]).protocol == "embedding"


@pytest.mark.parametrize("model", MODELS)
def test_dimensions_and_both_encodings(stack, sdk, model):
    floats = sdk.embeddings.create(model=model, input="hello", dimensions=4, encoding_format="float")
    assert len(floats.data[0].embedding) == 4
    raw = httpx.post(
        f"{stack.web_url}/v1/embeddings",
        json={"model": model, "input": "hello", "dimensions": 4, "encoding_format": "base64"},
        headers=sdk.api.headers,
    ).json()
    decoded = struct.unpack("<4f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats.data[0].embedding, rel=1e-6)


def test_the_model_lists_say_an_embedding_model_embeds(sdk):
    listed = {model.id: model.model_extra["capabilities"] for model in sdk.models.list()}
    assert listed["fake-embedding"] == ["embeddings"] and "tools" in listed["fake-model"]


def test_a_chat_model_is_not_an_embedding_model_nor_the_other_way(sdk):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.embeddings.create(model="fake-model", input="x")
    assert (refused.value.body["code"], refused.value.body["param"]) == ("model_rule_violation", "model")
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(model="fake-embedding", messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["param"] == "model"
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.embeddings.create(model="fake-embedding", input=[])
    assert refused.value.body["param"] == "input"
    assert not Task.objects.exists()
    assert "books balance" in run_command("billing_audit")
