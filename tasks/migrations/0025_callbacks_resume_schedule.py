from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration([("resume task callbacks", "tasks.jobs.callbacks_resume_job", 1)])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0024_callbacks_and_retention"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
