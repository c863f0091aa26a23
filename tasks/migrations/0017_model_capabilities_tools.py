"""Tools, structured output and reasoning became capabilities a catalog entry lists. Entries made before
keep what they could do: reasoning as their family's rules allowed it, and tools and structured output,
which the intrinsic rules still narrow, newly open to them."""

from django.db import migrations, models

NEW = ["tools", "json_schema", "reasoning"]


def add_new_capabilities(apps, schema_editor):
    Model = apps.get_model("tasks", "Model")
    for model in Model.objects.all():
        missing = [name for name in NEW if name not in model.capabilities]
        if missing:
            model.capabilities = [*model.capabilities, *missing]
            model.save(update_fields=["capabilities"])


def remove_new_capabilities(apps, schema_editor):
    Model = apps.get_model("tasks", "Model")
    for model in Model.objects.all():
        model.capabilities = [name for name in model.capabilities if name not in NEW]
        model.save(update_fields=["capabilities"])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0016_task_dialect")]
    operations = [
        migrations.AlterField(
            model_name="model",
            name="capabilities",
            field=models.JSONField(
                default=list, help_text="Subset of text, vision, video, audio, tools, json_schema, reasoning."
            ),
        ),
        migrations.RunPython(add_new_capabilities, remove_new_capabilities),
    ]
