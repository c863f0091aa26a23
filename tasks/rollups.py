"""The usage rollup: finished tasks summed per day, tenant, key, model, channel and outcome.

A scheduled job adds every task finished since the watermark, up to SETTLE_SECONDS ago (a task's
finished_at is written just before its transaction commits, so a short margin sees every commit).
Dashboards read the rollup only."""

from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from tasks.models import RollupWatermark

SETTLE_SECONDS = 30

ROLL_UP = """
INSERT INTO tasks_usagerollup
    (day, tenant_id, api_key_id, model, channel_id, status, error_code,
     tasks, prompt_tokens, completion_tokens, credits)
SELECT (finished_at AT TIME ZONE 'UTC')::date, tenant_id, api_key_id, model, channel_id, status, error_code,
       count(*),
       coalesce(sum((result->'usage'->>'prompt_tokens')::bigint), 0),
       coalesce(sum((result->'usage'->>'completion_tokens')::bigint), 0),
       coalesce(sum(credits_charged), 0)
FROM tasks_task
WHERE finished_at >= %s AND finished_at < %s
GROUP BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT (day, tenant_id, api_key_id, model, channel_id, status, error_code) DO UPDATE SET
    tasks = tasks_usagerollup.tasks + EXCLUDED.tasks,
    prompt_tokens = tasks_usagerollup.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = tasks_usagerollup.completion_tokens + EXCLUDED.completion_tokens,
    credits = tasks_usagerollup.credits + EXCLUDED.credits
"""


def usage_rollup(*, now: datetime | None = None) -> int:
    """Add the tasks finished since the last run; returns how many rollup rows were written."""
    upto = (now or timezone.now()) - timedelta(seconds=SETTLE_SECONDS)
    with transaction.atomic():
        mark = RollupWatermark.objects.select_for_update().first()
        if mark is None:
            mark = RollupWatermark.objects.create(finished_before=datetime(2000, 1, 1, tzinfo=UTC))
        if upto <= mark.finished_before:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(ROLL_UP, [mark.finished_before, upto])
            written = cursor.rowcount
        mark.finished_before = upto
        mark.save(update_fields=["finished_before"])
    return written
