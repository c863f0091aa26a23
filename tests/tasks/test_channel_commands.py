"""Channel commands: list, disable, enable and remove through the services, each leaving an AuditEvent;
addchannel's warnings and refusals."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tasks.models import Channel, Task, TaskAttempt
from tasks.services import channel_add, price_set
from tenants.models import AuditEvent
from tenants.services import apikey_issue, tenant_create
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db


def add(name: str = "main", **routing) -> Channel:
    return channel_add(
        name=name,
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        model_names=["b", "a"],
        **routing,
    )


def test_listchannels_prints_one_aligned_row_per_channel_under_a_header():
    add("main", priority=2)
    backup = add("backup")
    Channel.objects.filter(pk=backup.pk).update(circuit_state="open", circuit_reason="5 of 5 calls failed")
    lines = run("listchannels").strip().splitlines()
    assert " ".join(lines[0].split()) == "NAME PROVIDER STATE CIRCUIT PRIORITY WEIGHT MODELS BASE_URL REASON"
    assert lines[1].split() == [
        "backup",
        "openai",
        "enabled",
        "open",
        "0",
        "1",
        "a,b",
        "http://127.0.0.1:9/v1",
        "5",
        "of",
        "5",
        "calls",
        "failed",
    ]
    assert lines[2].split() == [
        "main",
        "openai",
        "enabled",
        "closed",
        "2",
        "1",
        "a,b",
        "http://127.0.0.1:9/v1",
        "-",
    ]
    assert lines[1].index("openai") == lines[2].index("openai") == lines[0].index("PROVIDER")


def test_disable_and_enable_a_channel_are_audited_and_leave_the_breaker_alone():
    channel = add()
    Channel.objects.filter(pk=channel.pk).update(circuit_state="open", circuit_reason="timeouts")
    run("disablechannel", "main", "--reason", "provider outage")
    channel.refresh_from_db()
    assert not channel.enabled and channel.disabled_reason.endswith("UTC: provider outage")
    assert "disabled" in run("listchannels").splitlines()[1].split()
    run("enablechannel", "main")
    channel.refresh_from_db()
    assert channel.enabled and channel.disabled_reason == ""
    assert (channel.circuit_state, channel.circuit_reason) == ("open", "timeouts")
    events = list(AuditEvent.objects.filter(action="channel.update").order_by("id"))
    assert [e.details["after"]["enabled"] for e in events] == [False, True]
    assert all(e.actor.startswith("cli:") for e in events)


def test_channel_commands_name_an_unknown_channel():
    for command in ("disablechannel", "enablechannel", "removechannel"):
        with pytest.raises(CommandError, match="no channel 'ghost'"):
            run(command, "ghost")


def test_removechannel_deletes_an_unused_channel_and_audits_it():
    add()
    run("removechannel", "main")
    assert not Channel.objects.exists()
    event = AuditEvent.objects.get(action="channel.remove")
    assert event.target == "channel main" and event.details["models"] == ["a", "b"]


def test_removechannel_refuses_a_channel_whose_attempts_are_on_record():
    channel = add()
    price = price_set(model_name="a", input_per_million=Decimal(1), output_per_million=Decimal(1))
    tenant = tenant_create(slug="acme")
    task = Task.objects.create(
        tenant=tenant,
        api_key=apikey_issue(tenant=tenant).api_key,
        model="a",
        catalog_model=price.model,
        price=price,
        protocol="text",
        request={},
        credits_reserved=Decimal(0),
    )
    TaskAttempt.objects.create(task=task, channel=channel, number=1)
    with pytest.raises(CommandError, match=r"has served 1 attempts.*disablechannel main"):
        run("removechannel", "main")
    assert Channel.objects.exists() and not AuditEvent.objects.filter(action="channel.remove").exists()


def addchannel(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(
        "addchannel",
        "main",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        *args,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def test_addchannel_warns_for_each_served_model_without_a_price():
    price_set(model_name="priced", input_per_million=Decimal(1), output_per_million=Decimal(1))
    out, err = addchannel("--models", "priced,free-a,free-b")
    assert "added channel main" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all("has no price" in w and "setprice" in w for w in warnings)
    assert "free-a" in warnings[0] and "free-b" in warnings[1]


def test_addchannel_refuses_an_api_key_flag_given_empty():
    with pytest.raises(CommandError, match="--api-key was given but is empty"):
        addchannel("--models", "a", "--api-key", "")
    assert not Channel.objects.exists()
    addchannel("--models", "a")  # no flag at all: an upstream that takes no key
    assert Channel.objects.get().api_key == ""
