from django.db import migrations

SCHEDULES = [
    # (name, function, every N minutes)
    ("reset budget periods", "tenants.jobs.budgets_reset_job", 1),
    ("prune rate-limit windows", "tenants.jobs.rate_events_prune_job", 5),
]


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
        )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[name for name, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_ledger_append_only"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
