from django.core.management.base import BaseCommand, CommandParser

from foxgate.cli import cli_actor, find_key
from tenants.services import apikey_revoke


class Command(BaseCommand):
    help = "Revoke an API key, given its id or the whole key. Every process refuses it within seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="the key id, or the whole sk-... key")

    def handle(self, *args, key: str, **options) -> None:
        api_key = find_key(key)
        if not apikey_revoke(api_key=api_key, actor=cli_actor()):
            self.stdout.write(f"key {api_key.key_id} of tenant {api_key.tenant.slug} was already revoked")
            return
        self.stdout.write(f"revoked key {api_key.key_id} of tenant {api_key.tenant.slug}")
