import re
import secrets

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone


class Command(BaseCommand):
    help = (
        "Print fresh production values for FOXGATE_SECRET_KEY, FOXGATE_API_KEY_PEPPERS and "
        "FOXGATE_SECRET_KEYS as NAME=value lines, for an environment file. Nothing is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--pepper-id", help="the new pepper's id (default: today's date, so rotations sort by age)"
        )

    def handle(self, *args, pepper_id: str | None, **options) -> None:
        pepper_id = pepper_id or f"{timezone.now():%Y%m%d}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", pepper_id):
            raise CommandError("--pepper-id must be 1 to 32 letters, digits, - or _")
        # URL-safe alphabets (a Fernet key may end in '='): no quote, space, comma or '$' for a shell or
        # the settings' id=value,id=value parser to mangle.
        self.stdout.write(f"FOXGATE_SECRET_KEY={secrets.token_urlsafe(50)}")
        self.stdout.write(f"FOXGATE_API_KEY_PEPPERS={pepper_id}={secrets.token_urlsafe(32)}")
        self.stdout.write(f"FOXGATE_SECRET_KEYS={Fernet.generate_key().decode()}")
        self.stderr.write(
            "Rotating? Put the new pepper first and keep the old ones after it (id=value,id=value), and the "
            "new secret key first in FOXGATE_SECRET_KEYS with the old ones after it, so existing API keys "
            "and stored upstream keys keep working."
        )
