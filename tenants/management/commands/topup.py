from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor, parse_credits
from tenants.models import Tenant
from tenants.services import credits_topup


class Command(BaseCommand):
    help = "Add credits to a tenant's balance, as a top-up line in its ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("amount")
        parser.add_argument("--memo", default="")

    def handle(self, *args, slug: str, amount: str, memo: str, **options) -> None:
        credits = parse_credits(amount, "AMOUNT")
        if not credits:
            raise CommandError("AMOUNT must be more than zero")
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        credits_topup(tenant=tenant, amount=credits, memo=memo, actor=cli_actor())
        tenant.refresh_from_db()
        self.stdout.write(
            f"added {credits} credits to {slug}; balance {tenant.balance}, available {tenant.available}"
        )
