from django.db import migrations

from foxgate.schedules import schedules_migration

create, remove = schedules_migration(
    [("resume webhook deliveries", "tenants.jobs.webhook_deliveries_resume_job", 1)]
)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0010_alerts"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
