from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tasks.jobs import task_run
from tasks.models import Task, UsageRollup
from tasks.rollups import SETTLE_SECONDS, usage_rollup

pytestmark = pytest.mark.django_db


def test_finished_tasks_are_counted_once_per_bucket(api, tenant, openai_channel, fake_openai):
    def finish(prompt: str) -> str:
        task_id = api.post(
            "/v1/llm/generations", {"model": "fake-model", "prompt": prompt}, format="json"
        ).json()["id"]
        task_run(task_id)
        return task_id

    start = timezone.now()
    finish("one")
    finish("two")
    fake_openai.configure(status=400)
    finish("three")
    Task.objects.update(finished_at=start)
    later = start + timedelta(seconds=SETTLE_SECONDS + 1)

    assert usage_rollup(now=later) == 2  # one completed bucket, one failed
    completed = UsageRollup.objects.get(status="completed")
    assert (completed.tasks, completed.model, completed.channel) == (2, "fake-model", openai_channel)
    assert completed.prompt_tokens > 0 and completed.completion_tokens > 0 and completed.credits > 0
    failed = UsageRollup.objects.get(status="failed")
    assert (failed.tasks, failed.error_code, failed.credits) == (1, "upstream_rejected", Decimal(0))

    assert usage_rollup(now=later) == 0  # nothing new since the watermark
    fake_openai.reset()
    Task.objects.filter(pk=finish("four")).update(finished_at=later)
    usage_rollup(now=later + timedelta(seconds=SETTLE_SECONDS + 1))
    assert UsageRollup.objects.get(status="completed").tasks == 3
