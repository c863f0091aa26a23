from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration(
    [
        ("reset budget periods", "tenants.jobs.budgets_reset_job", 1),
        ("prune rate-limit windows", "tenants.jobs.rate_events_prune_job", 5),
    ]
)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_ledger_append_only"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
