from decimal import Decimal

import pytest
from django.core.management import CommandError

from tasks.models import Channel, Model
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db


def test_setprice_creates_the_model_and_appends_versions():
    run("setprice", "gpt-x", "--input", "1.5", "--output", "6")
    run("setprice", "gpt-x", "--input", "2", "--output", "8")
    model = Model.objects.get(name="gpt-x")
    assert [
        (p.version, p.input_per_million, p.output_per_million) for p in model.prices.order_by("version")
    ] == [
        (1, Decimal("1.5"), Decimal("6")),
        (2, Decimal("2"), Decimal("8")),
    ]
    assert model.current_price().version == 2


def test_setprice_prices_cache_reads_and_writes_apart():
    run(
        "setprice", "claude-x", "--input", "3", "--output", "15",
        "--cached-input", "0.3", "--cache-write", "3.75", "--cache-write-1h", "6",
    )  # fmt: skip
    price = Model.objects.get(name="claude-x").current_price()
    rates = (price.cached_input_per_million, price.cache_write_per_million, price.cache_write_1h_per_million)
    assert rates == (Decimal("0.3"), Decimal("3.75"), Decimal("6"))
    # 1,000,000 input tokens: 400k plain, 100k read, 300k written for 5 minutes, 200k for an hour
    cost = price.cost(
        input_tokens=1_000_000,
        output_tokens=0,
        cached_input_tokens=100_000,
        cache_write_tokens=300_000,
        cache_write_1h_tokens=200_000,
    )
    assert (
        cost
        == Decimal("0.4") * 3
        + Decimal("0.1") * Decimal("0.3")
        + Decimal("0.3") * Decimal("3.75")
        + Decimal("0.2") * 6
    )
    run("setprice", "claude-x", "--input", "3", "--output", "15")
    assert (
        Model.objects.get(name="claude-x")
        .current_price()
        .cost(input_tokens=10, output_tokens=0, cache_write_tokens=10)
        == Decimal(30) / 1_000_000
    )  # no write price: written input is charged as input


def test_setprice_of_an_embedding_model_needs_no_output_price():
    with pytest.raises(CommandError, match="--output is required"):
        run("setprice", "gpt-x", "--input", "1")
    run("setprice", "text-embedding-3-small", "--input", "0.02", "--kind", "embedding")
    model = Model.objects.get(name="text-embedding-3-small")
    assert model.kind == Model.Kind.EMBEDDING
    assert model.current_price().output_per_million == 0
    run("setprice", "text-embedding-3-small", "--input", "0.03")  # stays an embedding model
    assert Model.objects.get(name="text-embedding-3-small").kind == Model.Kind.EMBEDDING


@pytest.mark.parametrize("args", [["--input", "cheap", "--output", "1"], ["--input", "1", "--output", "-1"]])
def test_setprice_rejects_bad_amounts(args):
    with pytest.raises(CommandError):
        run("setprice", "gpt-x", *args)
    assert not Model.objects.exists()


def test_addchannel_serves_the_listed_models():
    run(
        "addchannel",
        "main",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:8900/v1",
        "--api-key",
        "sk-up",
        "--models",
        "a, b",
    )
    channel = Channel.objects.get(name="main")
    assert sorted(channel.served_models.values_list("name", flat=True)) == ["a", "b"]
    assert channel.base_url == "http://127.0.0.1:8900/v1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "openai", "--base-url", "not a url", "--models", "a"], "--base-url"),
        (["--provider", "openai", "--base-url", "http://x/v1", "--models", " , "], "--models"),
        (["--provider", "carrier-pigeon", "--base-url", "http://x/v1", "--models", "a"], "invalid choice"),
    ],
)
def test_addchannel_rejects_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("addchannel", "main", *args)
    assert not Channel.objects.exists()
