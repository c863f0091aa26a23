"""Money and limits under concurrency, across two separate web server processes.

The two servers share nothing but PostgreSQL; requests alternate between them."""

import asyncio
import itertools
import time
from decimal import Decimal

import httpx
import pytest

from tasks.services import channel_add, price_set
from tenants.alerts import alert_rule_save, webhook_endpoint_add
from tenants.billing import billing_discrepancies
from tenants.models import Alert, AlertRule, EndUserSpend, LedgerEntry, Tenant, WebhookDelivery
from tenants.services import apikey_issue, apikey_revoke, tenant_create
from tests.helpers import poll_until_finished
from tests.webhooks import Receiver

pytestmark = pytest.mark.e2e

# Reply "Echo: w1 w2 ... w50" cut at max_tokens words: every task uses exactly MAX_TOKENS output tokens,
# and input is free, so each charge equals its hold and finished tasks free no credits mid-test.
MAX_TOKENS = 5
PROMPT = " ".join(f"w{i}" for i in range(50))


@pytest.fixture
def exact_price_model(stack, stack_db):
    price_set(model_name="exact-model", input_per_million=Decimal(0), output_per_million=Decimal(1000))
    channel_add(
        name="fake",
        provider="openai",
        base_url=f"{stack.fake_url}/v1",
        api_key="",
        model_names=["exact-model"],
    )
    httpx.post(f"{stack.fake_url}/_fake/reset")
    return Decimal(MAX_TOKENS * 1000) / 1_000_000  # credits per task, held and charged


async def burst(urls: list[str], secret: str, total: int, body: dict) -> list[httpx.Response]:
    """`total` submits at once, alternating between the web servers."""
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {secret}"}, timeout=60, limits=limits
    ) as client:
        targets = itertools.islice(itertools.cycle(urls), total)
        return await asyncio.gather(*(client.post(f"{url}/v1/llm/generations", json=body) for url in targets))


def test_concurrent_submits_never_overdraw(stack, exact_price_model):
    per_task = exact_price_model
    affordable = 20
    tenant = tenant_create(slug="tight", credits=per_task * affordable)
    secret = apikey_issue(tenant=tenant).secret
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.0})  # holds pile up while tasks run

    body = {"model": "exact-model", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    responses = asyncio.run(burst(stack.web_urls, secret, 400, body))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == affordable, sorted(set(statuses))
    assert statuses.count(402) == 400 - affordable
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"insufficient_balance"}
    accepted = {r.json()["id"] for r in responses if r.status_code == 200}
    assert {Decimal(r.json()["usage"]["credits_reserved"]) for r in responses if r.status_code == 200} == {
        per_task
    }

    with httpx.Client(base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}) as client:
        finished = [poll_until_finished(client, task_id, timeout=60) for task_id in accepted]
    assert {task["status"] for task in finished} == {"completed"}
    charges = sum(Decimal(task["usage"]["credits_charged"]) for task in finished)

    tenant.refresh_from_db()
    assert tenant.balance + charges == per_task * affordable
    assert tenant.held == 0 and tenant.balance == 0
    assert list(billing_discrepancies(tenant=tenant)) == []
    assert LedgerEntry.objects.filter(tenant=tenant, kind="hold").count() == affordable


def test_concurrent_submits_never_exceed_a_key_budget_and_a_refusal_holds_nothing(stack, exact_price_model):
    per_task = exact_price_model
    affordable = 10
    tenant = tenant_create(slug="keycapped", credits=Decimal(100))  # the tenant has room for them all
    capped = apikey_issue(tenant=tenant, budget=per_task * affordable)
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.0})  # holds pile up while tasks run

    body = {"model": "exact-model", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    responses = asyncio.run(burst(stack.web_urls, capped.secret, 100, body))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == affordable, sorted(set(statuses))
    assert {r.json()["error"]["code"] for r in responses if r.status_code != 200} == {"budget_exceeded"}
    accepted = {r.json()["id"] for r in responses if r.status_code == 200}
    # while they run, the tenant holds exactly what the key holds: a refused key hold took the tenant's
    # hold back with it
    tenant.refresh_from_db()
    capped.api_key.refresh_from_db()
    assert tenant.held + tenant.period_spend == capped.api_key.held + capped.api_key.period_spend
    with httpx.Client(base_url=stack.web_url, headers={"Authorization": f"Bearer {capped.secret}"}) as client:
        finished = [poll_until_finished(client, task_id, timeout=60) for task_id in accepted]
    assert {task["status"] for task in finished} == {"completed"}
    tenant.refresh_from_db()
    assert tenant.held == 0 and tenant.balance == Decimal(100) - per_task * affordable
    assert list(billing_discrepancies(tenant=tenant)) == []
    assert LedgerEntry.objects.filter(tenant=tenant, kind="hold").count() == affordable


def test_concurrent_submits_never_exceed_an_end_users_budget(stack, exact_price_model):
    """100 submits naming one end user at once over both web servers: the tenant's end-user budget
    admits exactly what it covers, and another end user keeps a budget of its own."""
    per_task = exact_price_model
    affordable = 10
    tenant = tenant_create(slug="peruser", credits=Decimal(100), end_user_budget=per_task * affordable)
    secret = apikey_issue(tenant=tenant).secret
    httpx.post(f"{stack.fake_url}/_fake/config", json={"latency": 1.0})  # holds pile up while tasks run

    messages = [{"role": "user", "content": PROMPT}]
    body = {"model": "exact-model", "messages": messages, "max_tokens": MAX_TOKENS, "user": "alice"}
    responses = asyncio.run(burst(stack.web_urls, secret, 100, body))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == affordable, sorted(set(statuses))
    refusals = [r.json()["error"] for r in responses if r.status_code != 200]
    assert {error["code"] for error in refusals} == {"budget_exceeded"}
    assert all("'alice'" in error["message"] for error in refusals)
    (bob,) = asyncio.run(burst(stack.web_urls, secret, 1, body | {"user": "bob"}))
    assert bob.status_code == 200

    accepted = {r.json()["id"] for r in [*responses, bob] if r.status_code == 200}
    with httpx.Client(base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}) as client:
        finished = [poll_until_finished(client, task_id, timeout=60) for task_id in accepted]
    assert {task["status"] for task in finished} == {"completed"}
    alice = EndUserSpend.objects.get(tenant=tenant, end_user="alice")
    assert (alice.held, alice.period_spend) == (0, per_task * affordable)
    assert list(billing_discrepancies(tenant=tenant)) == []


def test_200_concurrent_charges_crossing_80_percent_send_one_alert(
    stack, exact_price_model, private_webhooks
):
    """200 tasks charged at once over both web servers and the worker cluster, their total the whole
    budget: the 80 % threshold is crossed once, so the receiver gets one signed POST and the mail
    backend one email, from the cluster."""
    per_task = exact_price_model
    tenant = tenant_create(slug="alerted", credits=Decimal(100), budget=per_task * 200)
    secret = apikey_issue(tenant=tenant).secret
    with Receiver(private_webhooks) as receiver:
        endpoint = webhook_endpoint_add(tenant=tenant, url=receiver.url)
        rule = AlertRule(
            tenant=tenant, kind="budget", threshold=Decimal(80), webhook=endpoint, email="finance@example.com"
        )
        alert_rule_save(rule=rule)
        body = {"model": "exact-model", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
        responses = asyncio.run(burst(stack.web_urls, secret, 200, body))
        assert [r.status_code for r in responses].count(200) == 200
        with httpx.Client(base_url=stack.web_url, headers={"Authorization": f"Bearer {secret}"}) as client:
            finished = [poll_until_finished(client, r.json()["id"], timeout=60) for r in responses]
        assert {task["status"] for task in finished} == {"completed"}
        (received,) = receiver.wait_for(1)
        delivered = poll_until(lambda: WebhookDelivery.objects.filter(status="delivered").count() == 1)
        assert delivered and len(receiver.received) == 1
    assert received.signed_by(endpoint.secret) and received.json()["tenant"] == "alerted"
    assert Alert.objects.filter(rule=rule).count() == 1
    # the stack's mail folder holds every test's alert emails: this tenant's is one
    emails = [path.read_text() for path in (stack.log_dir / "emails").iterdir()]
    assert len([email for email in emails if '"tenant": "alerted"' in email]) == 1


def poll_until(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_rate_limit_holds_across_web_processes(stack, exact_price_model):
    rpm = 10
    tenant = tenant_create(slug="limited", credits=Decimal(100))
    secret = apikey_issue(tenant=tenant, rpm=rpm).secret
    body = {"model": "exact-model", "prompt": "hi", "max_tokens": MAX_TOKENS}

    responses = asyncio.run(burst(stack.web_urls, secret, 3 * rpm, body))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == rpm and statuses.count(429) == 2 * rpm
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    for response in refused:
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert response.headers["X-RateLimit-Limit"] == str(rpm)
        assert response.headers["X-RateLimit-Remaining"] == "0"
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(rpm))  # each admission saw every earlier one, whichever server took it
    assert {str(r.url).rsplit("/v1", 1)[0] for r in responses} == set(stack.web_urls)


def test_a_key_revoked_anywhere_is_refused_everywhere_within_2_seconds(stack, exact_price_model):
    tenant = tenant_create(slug="leaky", credits=Decimal(100))
    issued = apikey_issue(tenant=tenant)
    clients = [
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {issued.secret}"})
        for url in stack.web_urls
    ]
    for client in clients:  # both servers have now looked the key up (and may cache it)
        assert client.get("/v1/models").status_code == 200

    apikey_revoke(api_key=issued.api_key)
    revoked_at = time.monotonic()
    refused_after = []
    for client in clients:
        while client.get("/v1/models").status_code != 401:
            assert time.monotonic() - revoked_at < 2, "a server still accepts the revoked key after 2 s"
            time.sleep(0.05)
        refused_after.append(time.monotonic() - revoked_at)
        client.close()
    assert max(refused_after) < 2
    assert Tenant.objects.get(pk=tenant.pk).tasks.count() == 0
