import django.utils.timezone
from django.db import migrations, models

from foxgate.schedules import schedules_migration

create, remove = schedules_migration([("erase expired task content", "tasks.jobs.content_prune_job", 5)])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0025_callbacks_resume_schedule"), ("django_q", "0018_task_success_index")]

    operations = [
        migrations.AddField(
            model_name="retentionwatermark",
            name="sealed_before",
            field=models.DateTimeField(default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.RunPython(create, remove),
    ]
