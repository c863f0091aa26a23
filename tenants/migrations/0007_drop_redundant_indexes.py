# Ledger indexes that another index already serves, each written on every one of the three or so lines
# an answer adds (bench/results/indexes.md).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0015_drop_redundant_indexes'),
        ('tenants', '0006_ledger_by_tenant_kind'),
    ]

    operations = [
        migrations.AlterField(
            model_name='ledgerentry',
            name='task',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger', to='tasks.task'),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='ledger', to='tenants.tenant'),
        ),
    ]
