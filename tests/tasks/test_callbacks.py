"""callback_url: the final task object POSTed, signed, to an HTTPS receiver once the task is settled, a
failure retried; private addresses refused at submit and, after DNS, at delivery."""

import socket
from datetime import datetime

import httpx
import pytest

from foxgate import webhooks
from tasks.callbacks import callback_send
from tasks.jobs import task_run
from tasks.models import CallbackDelivery, Task
from tenants.models import Tenant
from tenants.services import callback_secret
from tests.webhooks import Receiver


@pytest.mark.e2e
def test_a_callback_is_signed_retried_after_a_500_and_carries_the_task_as_get_shows_it(
    stack, stack_api, webhook_tls
):
    with Receiver(webhook_tls, statuses=[500]) as receiver:
        submitted = stack_api.post(
            "/v1/llm/generations",
            json={"model": "fake-model", "prompt": "caption image 7", "callback_url": receiver.url},
        ).json()
        first, second = receiver.wait_for(2)
    task = Task.objects.select_related("tenant").get(pk=submitted["id"])
    secret = callback_secret(task.tenant)
    assert first.signed_by(secret) and second.signed_by(secret)
    assert not second.signed_by(secret + "x")
    assert second.json() == stack_api.get(f"/v1/tasks/{task.id}").json()
    assert second.json()["status"] == "completed" and second.json()["results"][0]["choices"]

    delivery = CallbackDelivery.objects.get(task=task)
    assert delivery.status == "delivered" and delivery.url == receiver.url
    assert [attempt.get("status_code") for attempt in delivery.attempts] == [500, 200]
    first_at, second_at = (datetime.fromisoformat(attempt["at"]) for attempt in delivery.attempts)
    assert (second_at - first_at).total_seconds() >= 1  # the first retry waits a second


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://169.254.169.254/latest/meta-data/", "private or reserved"),
        ("https://10.0.0.1/hooks", "private or reserved"),
        ("https://[::1]/hooks", "private or reserved"),
        ("https://localhost/hooks", "private or reserved address (localhost)"),
        ("http://hooks.example.com/done", "https"),
        ("https://hooks.example.com/" + "x" * 2048, "2048"),
    ],
)
def test_a_callback_to_a_private_address_or_not_https_is_refused_at_submit(api, openai_channel, url, why):
    answer = api.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "x", "callback_url": url}, format="json"
    )
    assert (answer.status_code, answer.json()["error"]["param"]) == (422, "callback_url")
    assert why in answer.json()["error"]["message"]
    chat = api.post(
        "/v1/chat/completions",
        {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "callback_url": url},
        format="json",
    )
    assert (chat.status_code, chat.json()["error"]["param"]) == (422, "callback_url")
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_a_callback_whose_name_resolves_to_a_private_address_is_refused_at_delivery(
    api, openai_channel, monkeypatch
):
    url = "https://hooks.example.com/done"
    task_id = api.post(
        "/v1/llm/generations", {"model": "fake-model", "prompt": "x", "callback_url": url}, format="json"
    ).json()["id"]
    monkeypatch.setattr(webhooks, "RETRY_BACKOFF", (0, 0, 0))
    resolved = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: resolved)
    monkeypatch.setattr(httpx, "post", lambda *args, **kwargs: pytest.fail("a refused callback was sent"))
    task_run(task_id)  # settles the task, which queues its callback
    callback_send(task_id, background=False)

    delivery = CallbackDelivery.objects.get(task_id=task_id)
    assert delivery.status == "failed" and len(delivery.attempts) == 4
    assert all("private or reserved address (10.1.2.3)" in attempt["error"] for attempt in delivery.attempts)
    callback_send(task_id, background=False)  # a second delivery of the job sends nothing more
    assert len(CallbackDelivery.objects.get(task_id=task_id).attempts) == 4
    assert Tenant.objects.get().callback_secret  # made on first use
