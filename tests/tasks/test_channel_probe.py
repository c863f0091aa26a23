"""The admin's "test connection": the web side only queues it; the cluster calls the upstream and records
the result on the channel, which the channel's pages show."""

import logging
import re
import threading
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.forms.models import model_to_dict
from django.test import Client
from django_q.models import OrmQ

from foxgate.fakes.openai import FakeOpenAI
from tasks.jobs import channel_probe_job
from tasks.models import Channel, TaskAttempt
from tasks.services import channel_add
from tenants.models import Membership
from tenants.services import membership_add
from tests.helpers import database_dump, upstream_requests

UPSTREAM_KEY = "fg-probe-upstream-secret-0123456789"  # not key-shaped, so only the exact-key mask hides it


class KeyQuotingOpenAI(FakeOpenAI):
    """Refuses every key and quotes the one it was given, as some real upstreams do."""

    def handle(self, exchange) -> None:
        if exchange.route_path.startswith("/_fake/"):
            super().handle(exchange)
            return
        self._record(exchange)
        message = f"Incorrect API key provided: {self.presented_api_key(exchange)}."
        exchange.send_json(401, self.error_body(401, message))


@pytest.fixture
def staff(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", email="", password=None))
    return client


def change_page(client: Client, channel: Channel) -> str:
    response = client.get(f"/admin/tasks/channel/{channel.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def listed_probe(client: Client) -> tuple[str, str]:
    """The list's probe badge and time of its one channel."""
    response = client.get("/admin/tasks/channel/")
    assert response.status_code == 200
    html = response.content.decode()
    badge = re.findall(r">\s*(pending|ok|failed)\s*</span>", html)
    when = re.findall(r'data-label="probed">([^<]*)<', html)
    assert len(badge) == 1 and len(when) == 1, html
    return badge[0], when[0]


def test_opening_the_action_asks_to_confirm_and_queues_nothing(staff, openai_channel, fake_openai):
    response = staff.get(f"/admin/tasks/channel/{openai_channel.pk}/test-connection/")

    assert response.status_code == 200
    assert 'id="test-connection"' in response.content.decode()
    assert not OrmQ.objects.exists()
    assert fake_openai.requests == []
    openai_channel.refresh_from_db()
    assert openai_channel.probe_requested_at is None


def test_the_action_queues_a_probe_job_and_changes_nothing_else(
    staff, openai_channel, fake_openai, django_capture_on_commit_callbacks
):
    before = model_to_dict(Channel.objects.get(pk=openai_channel.pk))

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/admin/tasks/channel/{openai_channel.pk}/test-connection/")

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/tasks/channel/{openai_channel.pk}/change/"
    [queued] = OrmQ.objects.all()
    assert (queued.func(), queued.args()) == ("tasks.jobs.channel_probe_job", (openai_channel.pk,))
    assert fake_openai.requests == [], "the web process called the upstream itself"
    channel = Channel.objects.get(pk=openai_channel.pk)
    assert channel.probe_requested_at is not None and channel.probe_pending
    assert model_to_dict(channel) == {**before, "probe_requested_at": channel.probe_requested_at}
    assert "pending since" in change_page(staff, channel)
    assert listed_probe(staff) == ("pending", f"{channel.probe_requested_at:%Y-%m-%d %H:%M:%S} UTC")


def test_a_tenants_admin_cannot_test_a_channel(tenant, openai_channel, fake_openai):
    user = User.objects.create_user("acme-admin", password=None, is_staff=True)
    membership_add(user=user, tenant=tenant, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)

    response = client.post(f"/admin/tasks/channel/{openai_channel.pk}/test-connection/")

    assert response.status_code == 403
    assert not OrmQ.objects.exists() and fake_openai.requests == []
    assert Channel.objects.get(pk=openai_channel.pk).probe_requested_at is None


def test_the_job_records_ok_and_the_latency_on_the_channel(staff, openai_channel, fake_openai):
    fake_openai.configure(latency=0.2)
    Channel.objects.filter(pk=openai_channel.pk).update(probe_requested_at=Channel.objects.get().created_at)

    assert channel_probe_job(openai_channel.pk) is True

    channel = Channel.objects.get(pk=openai_channel.pk)
    assert channel.probe_ok is True and not channel.probe_pending
    assert 200 <= channel.probe_latency_ms < 10_000
    assert channel.probe_message == f"fake-model answered in {channel.probe_latency_ms} ms."
    [call] = fake_openai.requests
    assert call["body"]["messages"] == [{"role": "user", "content": "Say OK."}]
    assert channel.probe_message in change_page(staff, channel)
    assert listed_probe(staff) == ("ok", f"{channel.probe_finished_at:%Y-%m-%d %H:%M:%S} UTC")
    assert not TaskAttempt.objects.exists(), "a probe is not traffic: no attempt row, no breaker input"


def test_a_refused_key_is_recorded_without_the_key_and_leaves_the_channel_in_service(
    staff, priced_model, caplog
):
    caplog.set_level(logging.DEBUG)
    with KeyQuotingOpenAI() as upstream:
        channel = channel_add(
            name="refusing",
            provider="openai",
            base_url=upstream.base_url,
            api_key=UPSTREAM_KEY,
            model_names=[priced_model.name],
        )

        assert channel_probe_job(channel.pk) is False

        assert upstream.requests[0]["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    channel.refresh_from_db()
    assert channel.probe_ok is False
    assert channel.probe_message.startswith("fake-model failed: upstream answered 401: Incorrect API key")
    assert UPSTREAM_KEY not in channel.probe_message
    assert UPSTREAM_KEY not in caplog.text
    assert UPSTREAM_KEY not in database_dump()
    assert channel.enabled and channel.disabled_reason == ""
    assert channel.circuit_state == Channel.Circuit.CLOSED
    page = change_page(staff, channel)
    assert "upstream answered 401" in page and UPSTREAM_KEY not in page
    assert listed_probe(staff)[0] == "failed"


def test_an_unreachable_channel_is_recorded_as_failed(staff, priced_model):
    with FakeOpenAI() as gone:
        base_url = gone.base_url  # a port nothing listens on once the fake has stopped
    channel = channel_add(
        name="gone", provider="openai", base_url=base_url, api_key="", model_names=[priced_model.name]
    )

    assert channel_probe_job(channel.pk) is False

    channel.refresh_from_db()
    assert channel.probe_message == "fake-model failed: upstream connection failed: ClientConnectorError"
    assert channel.enabled and channel.circuit_state == Channel.Circuit.CLOSED


def test_a_probe_overtaken_by_a_newer_request_leaves_the_channel_pending(transactional_db, priced_model):
    with FakeOpenAI(latency=0.5) as upstream:
        channel = channel_add(
            name="slow", provider="openai", base_url=upstream.base_url, api_key="", model_names=["fake-model"]
        )
        Channel.objects.filter(pk=channel.pk).update(probe_requested_at=channel.created_at)
        outcome: dict[str, Any] = {}

        def probe_in_the_cluster() -> None:
            try:
                outcome["ok"] = channel_probe_job(channel.pk)
            finally:
                connection.close()  # this thread's own connection, or the table flush waits on it

        first = threading.Thread(target=probe_in_the_cluster)
        first.start()
        deadline = time.monotonic() + 10
        while not upstream.requests:
            assert time.monotonic() < deadline, "the probe never reached the upstream"
            time.sleep(0.01)
        # The operator asks again while the first probe is still waiting on the upstream.
        Channel.objects.filter(pk=channel.pk).update(probe_requested_at=channel.created_at.replace(year=2100))
        first.join(timeout=30)

    assert outcome == {"ok": True}
    channel.refresh_from_db()
    assert channel.probe_pending and channel.probe_finished_at is None


@pytest.mark.e2e
def test_the_cluster_runs_the_probe_and_the_page_shows_it(stack, stack_db, priced_model):
    channel = channel_add(
        name="stack-fake",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=[priced_model.name],
    )
    User.objects.create_superuser("ops", email="", password="a long password")
    httpx.post(f"{stack.fake_url}/_fake/reset")
    httpx.delete(f"{stack.fake_url}/_fake/requests")
    with httpx.Client(base_url=stack.web_url, timeout=30) as browser:
        login = browser.get("/admin/login/")
        signed_in = browser.post(
            "/admin/login/",
            data={"username": "ops", "password": "a long password", "csrfmiddlewaretoken": _csrf(login.text)},
            headers={"Referer": f"{stack.web_url}/admin/login/"},
        )
        assert signed_in.status_code == 302, signed_in.text
        action = f"/admin/tasks/channel/{channel.pk}/test-connection/"
        confirm = browser.get(action)
        queued = browser.post(
            action,
            data={"csrfmiddlewaretoken": _csrf(confirm.text)},
            headers={"Referer": f"{stack.web_url}{action}"},
        )
        assert queued.status_code == 302, queued.text

        deadline = time.monotonic() + 20
        while "answered in" not in (page := browser.get(f"/admin/tasks/channel/{channel.pk}/change/").text):
            assert time.monotonic() < deadline, "the probe's result never appeared on the channel's page"
            time.sleep(0.1)
        assert "fake-model answered in" in page and "pending since" not in page
        listed = browser.get("/admin/tasks/channel/").text
        assert re.search(r">\s*ok\s*</span>", listed), listed

    [probe] = upstream_requests(stack)
    assert probe["body"]["messages"] == [{"role": "user", "content": "Say OK."}]
    channel.refresh_from_db()
    assert channel.probe_ok is True and channel.probe_latency_ms is not None


def _csrf(html: str) -> str:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token, html
    return token[1]
