# Indexes that another index of the same table already serves, each written on every insert and on
# every update that is not a HOT one: tasks, attempts and stream chunks (bench/results/indexes.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0014_catalog_notify'),
        ('tenants', '0006_ledger_by_tenant_kind'),
    ]

    operations = [
        migrations.AlterField(
            model_name='streamchunk',
            name='task',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='tasks.task'),
        ),
        migrations.AlterField(
            model_name='task',
            name='api_key',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='tasks', to='tenants.apikey'),
        ),
        migrations.AlterField(
            model_name='task',
            name='channel',
            field=models.ForeignKey(blank=True, db_index=False, help_text='The channel whose call decided the outcome.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tasks.channel'),
        ),
        migrations.AlterField(
            model_name='task',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='tasks', to='tenants.tenant'),
        ),
        migrations.AlterField(
            model_name='taskattempt',
            name='channel',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='attempts', to='tasks.channel'),
        ),
        migrations.AlterField(
            model_name='taskattempt',
            name='task',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='tasks.task'),
        ),
        # The primary key's varchar_pattern_ops copy serves only LIKE 'prefix%', which nothing asks of a
        # task id (the admin searches it with id__exact, which the primary key serves).
        migrations.RunSQL(
            'DROP INDEX IF EXISTS "tasks_task_id_9d65e96a_like"',
            reverse_sql='CREATE INDEX "tasks_task_id_9d65e96a_like" ON "tasks_task" ("id" varchar_pattern_ops)',
        ),
    ]
