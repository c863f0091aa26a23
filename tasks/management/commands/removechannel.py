from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor
from tasks.management.commands._channels import find_channel
from tasks.services import channel_remove


class Command(BaseCommand):
    help = (
        "Delete a channel that never served a call. One with attempts on record is refused (their history "
        "names it): disable it instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args, name: str, **options) -> None:
        channel = find_channel(name)
        try:
            channel_remove(channel=channel, actor=cli_actor())
        except ValidationError as error:
            raise CommandError(error.message_dict["channel"][0]) from None
        self.stdout.write(f"removed channel {name}")
