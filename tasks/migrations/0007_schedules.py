from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration([("expire stream chunks", "tasks.jobs.stream_chunks_expire_job", 1)])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0006_stream_chunks"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
