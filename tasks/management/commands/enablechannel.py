from django.core.management.base import BaseCommand, CommandParser

from foxgate.cli import cli_actor
from tasks.management.commands._channels import find_channel
from tasks.services import channel_update


class Command(BaseCommand):
    help = (
        "Route calls to a channel again and clear why it was disabled. Its circuit breaker is left as it "
        "is: an open circuit still cools down and tries one call first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args, name: str, **options) -> None:
        channel = find_channel(name)
        channel_update(channel=channel, actor=cli_actor(), enabled=True, disabled_reason="")
        self.stdout.write(f"enabled channel {channel.name} (circuit {channel.circuit_state})")
