from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration([("roll up usage", "tasks.jobs.usage_rollup_job", 1)])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0009_admin_history_and_rollups")]

    operations = [migrations.RunPython(create, remove)]
