from django.db import migrations, models

from foxgate.crypto import encrypt


def encrypt_existing(apps, schema_editor):
    Channel = apps.get_model("tasks", "Channel")
    for channel in Channel.objects.exclude(api_key=""):
        channel.api_key_encrypted = encrypt(channel.api_key)
        channel.save(update_fields=["api_key_encrypted"])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0003_price_groups_charge_basis")]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="api_key_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(encrypt_existing, migrations.RunPython.noop),
        migrations.RemoveField(model_name="channel", name="api_key"),
    ]
