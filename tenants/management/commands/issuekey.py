from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import Tenant
from tenants.services import apikey_issue


class Command(BaseCommand):
    help = "Issue an API key for a tenant. The secret is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args, slug: str, name: str, **options) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        issued = apikey_issue(tenant=tenant, name=name)
        self.stdout.write(
            f"issued key {issued.api_key.key_id} for tenant {tenant.slug}; it is shown only now:"
        )
        self.stdout.write(issued.secret)
