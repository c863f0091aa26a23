"""The usage rollup: finished tasks summed per day, tenant, key, model, channel and outcome, and per day,
tenant and end user or tag.

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

# Per end user and per tag (each of a task's tags counts the whole task: a task tagged team=a and
# project=b is in both sums, as each tag's spend is the spend of the tasks carrying it).
ATTRIBUTED_ROLL_UP = """
INSERT INTO tasks_attributedusage
    (day, tenant_id, kind, tag, value, tasks, prompt_tokens, completion_tokens, credits)
SELECT day, tenant_id, kind, tag, value, count(*),
       coalesce(sum((result->'usage'->>'prompt_tokens')::bigint), 0),
       coalesce(sum((result->'usage'->>'completion_tokens')::bigint), 0),
       coalesce(sum(credits_charged), 0)
FROM (
    SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, tenant_id, 'user' AS kind, '' AS tag,
           end_user AS value, result, credits_charged
    FROM tasks_task
    WHERE finished_at >= %(since)s AND finished_at < %(upto)s AND end_user <> ''
    UNION ALL
    SELECT (finished_at AT TIME ZONE 'UTC')::date, tenant_id, 'tag', tag.key, tag.value,
           result, credits_charged
    FROM tasks_task CROSS JOIN jsonb_each_text(tags) AS tag
    WHERE finished_at >= %(since)s AND finished_at < %(upto)s AND tags <> '{}'::jsonb
) AS attributed
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (day, tenant_id, kind, tag, value) DO UPDATE SET
    tasks = tasks_attributedusage.tasks + EXCLUDED.tasks,
    prompt_tokens = tasks_attributedusage.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = tasks_attributedusage.completion_tokens + EXCLUDED.completion_tokens,
    credits = tasks_attributedusage.credits + EXCLUDED.credits
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
            cursor.execute(ATTRIBUTED_ROLL_UP, {"since": mark.finished_before, "upto": upto})
            written += cursor.rowcount
        mark.finished_before = upto
        mark.save(update_fields=["finished_before"])
    return written
