from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor, find_key
from tenants.services import apikey_rotate


class Command(BaseCommand):
    help = (
        "Give an API key a new secret; the old one keeps working for --grace seconds. "
        "The new key is printed once, alone on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="the key id, or the whole sk-... key")
        parser.add_argument("--grace", type=int, required=True, help="seconds the old secret keeps working")

    def handle(self, *args, key: str, grace: int, **options) -> None:
        if grace < 0:
            raise CommandError("--grace must be zero or more seconds")
        api_key = find_key(key)
        if api_key.revoked_at is not None:
            raise CommandError(f"key {api_key.key_id} is revoked; issue a new one instead")
        issued = apikey_rotate(api_key=api_key, grace=timedelta(seconds=grace), actor=cli_actor())
        self.stdout.write(f"rotated key {api_key.key_id}; the old secret works for {grace}s more. New key:")
        self.stdout.write(issued.secret)
