from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor, parse_credits, parse_when, refusal_error
from tenants.models import Spending, Tenant
from tenants.services import apikey_issue


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(value)
    return int(value)


KEY_FLAGS = {
    "rpm": "--rpm",
    "tpm": "--tpm",
    "max_concurrency": "--concurrency",
    "budget": "--budget",
    "allowed_ips": "--ips",
    "allowed_models": "--models",
}


class Command(BaseCommand):
    help = "Issue an API key for a tenant. The secret is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--models", default="", help="comma-separated model names or families (gpt-4o*)")
        parser.add_argument("--ips", default="", help="comma-separated addresses or CIDR ranges")
        parser.add_argument("--rpm", type=positive_int, help="requests per minute")
        parser.add_argument("--tpm", type=positive_int, help="tokens per minute")
        parser.add_argument("--concurrency", type=positive_int, help="tasks running at once")
        parser.add_argument("--budget", help="credits per budget period")
        parser.add_argument("--budget-period", choices=Spending.Period.values, default=Spending.Period.MONTH)
        parser.add_argument("--expires", help="30d, 12h, 45m from now, or an ISO date")

    def handle(self, *args, slug: str, **options) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        try:
            issued = apikey_issue(
                tenant=tenant,
                name=options["name"],
                allowed_models=[m for m in options["models"].split(",") if m.strip()],
                allowed_ips=[ip for ip in options["ips"].split(",") if ip.strip()],
                expires_at=parse_when(options["expires"], "--expires") if options["expires"] else None,
                rpm=options["rpm"],
                tpm=options["tpm"],
                max_concurrency=options["concurrency"],
                budget=parse_credits(options["budget"], "--budget") if options["budget"] else None,
                budget_period=options["budget_period"],
                actor=cli_actor(),
            )
        except ValidationError as error:  # the key rules of tenants.services, named by their flags
            raise refusal_error(error, KEY_FLAGS) from None
        self.stdout.write(
            f"issued key {issued.api_key.key_id} for tenant {tenant.slug}; it is shown only now:"
        )
        self.stdout.write(issued.secret)
