from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration([("reclaim abandoned tasks", "tasks.jobs.tasks_reclaim_job", 1)])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0007_schedules")]

    operations = [migrations.RunPython(create, remove)]
