from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from foxgate.cli import cli_actor, parse_credits
from tenants.models import Tenant
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant, optionally with initial credits (written to its ledger as a top-up)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--credits", default="0", help="initial credits")

    def handle(self, *args, slug: str, name: str, credits: str, **options) -> None:
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"SLUG must be letters, digits, hyphens or underscores, not {slug!r}"
            ) from None
        amount = parse_credits(credits, "--credits")
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} already exists")
        tenant = tenant_create(slug=slug, name=name, credits=amount, actor=cli_actor())
        self.stdout.write(f"created tenant {tenant.slug} with {tenant.balance} credits")
