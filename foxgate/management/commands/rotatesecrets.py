from django.core.management.base import BaseCommand
from django.db import transaction

from foxgate.crypto import reencrypt
from tasks.models import Channel


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored upstream API key with the first key of FOXGATE_SECRET_KEYS, "
        "after which older keys can be removed from the list."
    )

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            for channel in Channel.objects.select_for_update().exclude(api_key_encrypted=""):
                channel.api_key_encrypted = reencrypt(channel.api_key_encrypted)
                channel.save(update_fields=["api_key_encrypted"])
                count += 1
        self.stdout.write(f"re-encrypted {count} channel API keys with the newest key")
