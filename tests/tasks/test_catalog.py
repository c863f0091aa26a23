"""Each web process keeps the catalog admission reads (tasks/catalog.py); a change to it applies to the
very next submit on every web process, whoever made it: the services, an ORM update as the cluster's
breaker makes, an operator's psql."""

import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from tasks.catalog import Catalog, catalog
from tasks.models import Channel, Model, Price, Task
from tasks.services import channel_update, model_update, price_current, price_set
from tenants.models import ApiKey
from tenants.services import override_add

BODY = {"model": "fake-model", "prompt": "Hi", "max_tokens": 10}
SUBMITS_PER_SERVER = 4  # each on a new connection, so the first server's two workers both answer


def submit_everywhere(stack, stack_api) -> list[httpx.Response]:
    """The same submit, several times to every web server, each on a new connection."""
    return [
        httpx.post(f"{url}/v1/llm/generations", json=BODY, headers=stack_api.headers, timeout=30)
        for url in stack.web_urls
        for _ in range(SUBMITS_PER_SERVER)
    ]


def all_finished(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Task.objects.filter(status__in=Task.UNFINISHED).exists():
        assert time.monotonic() < deadline, "the cluster did not finish the tasks submitted"
        time.sleep(0.05)


def answers(responses: list[httpx.Response]) -> set[tuple[int, str | None]]:
    return {
        (response.status_code, response.json()["error"]["code"] if response.status_code != 200 else None)
        for response in responses
    }


@pytest.mark.e2e
def test_a_new_price_applies_to_the_next_submit_on_every_web_process(stack, stack_api):
    before = submit_everywhere(stack, stack_api)  # every process has read and kept the price
    assert answers(before) == {(200, None)}
    price_set(model_name="fake-model", input_per_million=Decimal(10), output_per_million=Decimal(20))
    after = submit_everywhere(stack, stack_api)
    assert answers(after) == {(200, None)}
    versions = dict(Task.objects.values_list("id", "price__version"))
    assert {versions[response.json()["id"]] for response in before} == {1}
    assert {versions[response.json()["id"]] for response in after} == {2}
    reserved = {Decimal(response.json()["usage"]["credits_reserved"]) for response in before + after}
    assert len(reserved) == 2 and max(reserved) == 10 * min(reserved)


@pytest.mark.e2e
def test_a_model_or_channel_taken_away_is_refused_by_the_next_submit_on_every_web_process(stack, stack_api):
    assert answers(submit_everywhere(stack, stack_api)) == {(200, None)}
    model = Model.objects.get(name="fake-model")
    model_update(model=model, enabled=False)
    assert answers(submit_everywhere(stack, stack_api)) == {(422, "model_not_found")}
    model_update(model=model, enabled=True)
    assert answers(submit_everywhere(stack, stack_api)) == {(200, None)}

    channel = Channel.objects.get(name="fake")
    channel_update(channel=channel, enabled=False)
    assert answers(submit_everywhere(stack, stack_api)) == {(503, "no_available_channel")}
    channel_update(channel=channel, enabled=True)
    assert answers(submit_everywhere(stack, stack_api)) == {(200, None)}

    # The breaker opening, written as tasks/routing.py writes it, once the tasks above are done: a call
    # that succeeds closes the breaker again, as it should.
    all_finished()
    Channel.objects.filter(pk=channel.pk).update(
        circuit_state=Channel.Circuit.OPEN, circuit_open_until=timezone.now() + timedelta(minutes=5)
    )
    assert answers(submit_everywhere(stack, stack_api)) == {(503, "no_available_channel")}
    Channel.objects.filter(pk=channel.pk).update(
        circuit_state=Channel.Circuit.CLOSED, circuit_open_until=None
    )
    assert answers(submit_everywhere(stack, stack_api)) == {(200, None)}

    tenant = ApiKey.objects.get().tenant
    override_add(tenant=tenant, model_pattern="fake-*", disabled=True)
    assert answers(submit_everywhere(stack, stack_api)) == {(403, "model_not_allowed")}


class Ear:
    """A listener as the catalog sees one."""

    def __init__(self) -> None:
        self.hearing = True

    def hears(self) -> bool:
        return self.hearing


def kept_after(catalog: Catalog, *, between_read_and_keep=lambda: None) -> bool:
    """Whether a read of fake-model is kept, when `between_read_and_keep` happens while it runs."""
    stamp = catalog.generation()
    between_read_and_keep()
    price = Price()  # what is kept does not matter here, only whether it is
    catalog.keep(
        stamp, name="fake-model", group="", price=price, channel_closed=True, tenant_id=1, has_overrides=False
    )
    return catalog.price("fake-model", "") is not None and catalog.has_overrides(1) is False


def test_the_catalog_keeps_nothing_unless_a_listener_hears_changes():
    catalog = Catalog()
    assert not kept_after(catalog)
    ear = Ear()
    catalog.listener_started(ear)
    assert kept_after(catalog)
    ear.hearing = False  # its connection dropped, or its event loop stopped: changes may go unheard
    assert catalog.price("fake-model", "") is None
    assert not kept_after(catalog)
    ear.hearing = True
    catalog.listener_stopped(ear)
    assert catalog.price("fake-model", "") is None and not kept_after(catalog)


def test_a_read_that_a_change_overtook_is_not_kept_and_a_change_forgets_everything():
    catalog = Catalog()
    catalog.listener_started(Ear())
    assert not kept_after(catalog, between_read_and_keep=catalog.changed)
    assert kept_after(catalog)
    catalog.changed()
    assert catalog.price("fake-model", "") is None and catalog.has_overrides(1) is None


@pytest.fixture
def hearing():
    """This process's catalog, as if its event listener heard every change."""
    ear = Ear()
    catalog.listener_started(ear)
    yield catalog
    catalog.listener_stopped(ear)


@pytest.mark.django_db(transaction=True)
def test_a_submit_inside_a_transaction_reads_the_price_that_transaction_set(priced_model, tenant, hearing):
    first = price_current(name=priced_model.name, group="", tenant=tenant)
    assert hearing.price(priced_model.name, "") is not None  # kept, from outside a transaction
    with transaction.atomic():
        price_set(model_name=priced_model.name, input_per_million=Decimal(5), output_per_million=Decimal(5))
        inside = price_current(name=priced_model.name, group="", tenant=tenant)
    assert (first.version, inside.version) == (1, 2)
