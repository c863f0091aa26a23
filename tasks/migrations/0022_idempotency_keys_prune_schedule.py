from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration(
    [("forget expired idempotency keys", "tasks.jobs.idempotency_keys_prune_job", 60)]
)


class Migration(migrations.Migration):
    dependencies = [("tasks", "0021_idempotency_keys"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
