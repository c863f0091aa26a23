from django.core.management.base import BaseCommand

from foxgate.cli import table
from tasks.models import Channel


class Command(BaseCommand):
    help = "List channels, one a line under a header: state, circuit, routing, models, upstream, why."

    def handle(self, *args, **options) -> None:
        channels = Channel.objects.prefetch_related("served_models").order_by("name")
        rows = [
            (
                channel.name,
                channel.provider,
                "enabled" if channel.enabled else "disabled",
                channel.circuit_state,
                channel.priority,
                channel.weight,
                ",".join(sorted(model.name for model in channel.served_models.all())),
                channel.base_url,
                channel.disabled_reason or channel.circuit_reason,
            )
            for channel in channels
        ]
        header = (
            "NAME",
            "PROVIDER",
            "STATE",
            "CIRCUIT",
            "PRIORITY",
            "WEIGHT",
            "MODELS",
            "BASE_URL",
            "REASON",
        )
        self.stdout.write(table(header, rows))
