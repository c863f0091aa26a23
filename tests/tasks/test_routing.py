"""Channel choice: priority, weight, exclusion, concurrency caps and the breaker's single trial."""

import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tasks.models import Channel, Task, TaskAttempt
from tasks.routing import attempt_start, channels_available
from tasks.services import channel_add, price_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def task(api):
    price_set(model_name="m", input_per_million=Decimal(1), output_per_million=Decimal(1))
    for name, priority, weight in [("a", 10, 3), ("b", 10, 1), ("c", 0, 1)]:
        channel_add(
            name=name,
            provider="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="",
            model_names=["m"],
            priority=priority,
            weight=weight,
        )
    task_id = api.post("/v1/llm/generations", {"model": "m", "prompt": "x"}, format="json").json()["id"]
    return Task.objects.select_related("catalog_model").get(pk=task_id)


def pick(task, exclude=frozenset()) -> str | None:
    attempt, _ = attempt_start(task=task, exclude=set(exclude))
    if attempt is None:
        return None
    attempt.delete()  # keep counts clean between picks
    return attempt.channel.name


def ids(*names: str) -> set[int]:
    return set(Channel.objects.filter(name__in=names).values_list("pk", flat=True))


def test_highest_priority_shares_traffic_by_weight(task):
    random.seed(7)  # a fixed draw: the bounds below hold for it, and fail if weights were ignored
    counts = Counter(pick(task) for _ in range(400))
    assert set(counts) == {"a", "b"}  # c is only a fallback
    assert 2.2 < counts["a"] / counts["b"] < 4.2  # weights 3:1


def test_a_tried_channel_is_never_picked_again_and_lower_priority_is_the_fallback(task):
    assert pick(task, exclude=ids("a")) == "b"
    assert pick(task, exclude=ids("a", "b")) == "c"
    assert pick(task, exclude=ids("a", "b", "c")) is None


def test_open_circuit_is_skipped_until_its_cooldown_ends(task):
    Channel.objects.filter(name__in=["a", "b"]).update(
        circuit_state="open", circuit_open_until=timezone.now() + timedelta(minutes=1)
    )
    assert pick(task) == "c"
    Channel.objects.filter(name="a").update(circuit_open_until=timezone.now() - timedelta(seconds=1))
    assert pick(task) == "a"  # the trial call
    assert Channel.objects.get(name="a").circuit_state == "half_open"
    assert pick(task, exclude=ids("c")) is None  # a's trial is taken and b still cools down


def test_only_one_trial_is_claimed(task):
    Channel.objects.exclude(name="a").update(enabled=False)
    Channel.objects.filter(name="a").update(circuit_state="open", circuit_open_until=timezone.now())
    first, _ = attempt_start(task=task, exclude=set())
    second, busy = attempt_start(task=task, exclude=set())
    assert first is not None and first.channel.name == "a"
    assert second is None and not busy


def test_a_full_channel_is_busy_not_failed(task):
    Channel.objects.exclude(name="a").update(enabled=False)
    Channel.objects.filter(name="a").update(max_concurrency=1)
    running, _ = attempt_start(task=task, exclude=set())
    assert running is not None
    blocked, busy = attempt_start(task=task, exclude=set())
    assert blocked is None and busy
    TaskAttempt.objects.filter(pk=running.pk).update(finished_at=timezone.now())
    freed, _ = attempt_start(task=task, exclude=set())
    assert freed is not None


def test_submit_counts_only_channels_that_could_serve(task):
    model = task.catalog_model
    assert len(channels_available(model)) == 3
    Channel.objects.update(circuit_state="open", circuit_open_until=timezone.now() + timedelta(minutes=1))
    assert channels_available(model) == []
