from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from foxgate.cli import cli_actor
from tasks.management.commands._channels import find_channel
from tasks.services import channel_update


class Command(BaseCommand):
    help = "Stop routing calls to a channel (tasks already on it finish). Recorded in the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--reason", default="", help="shown in listchannels and the admin")

    def handle(self, *args, name: str, reason: str, **options) -> None:
        channel = find_channel(name)
        why = reason.strip() or "disabled by an operator"
        channel_update(
            channel=channel,
            actor=cli_actor(),
            enabled=False,
            disabled_reason=f"{timezone.now():%Y-%m-%d %H:%M:%S} UTC: {why}",
        )
        self.stdout.write(f"disabled channel {channel.name}")
