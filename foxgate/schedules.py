"""Scheduled jobs of the worker cluster, declared in data migrations so every database has them."""

from collections.abc import Callable

# (name, dotted path of the job function, every N minutes)
Schedule = tuple[str, str, int]


def schedules_migration(schedules: list[Schedule]) -> tuple[Callable, Callable]:
    """RunPython forward and backward functions that create and remove these django-q2 schedules."""

    def create(apps, schema_editor) -> None:
        model = apps.get_model("django_q", "Schedule")
        for name, func, minutes in schedules:
            model.objects.update_or_create(
                name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
            )

    def remove(apps, schema_editor) -> None:
        apps.get_model("django_q", "Schedule").objects.filter(
            name__in=[name for name, _, _ in schedules]
        ).delete()

    return create, remove
