from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from foxgate.cli import table
from tenants.models import ApiKey, Tenant


def key_state(api_key: ApiKey, now) -> str:
    if api_key.revoked_at is not None:
        return "revoked"
    return "expired" if api_key.is_expired(now) else "active"


def when(moment) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}" if moment else ""


class Command(BaseCommand):
    help = "List a tenant's API keys, one a line under a header (never a secret: only key ids)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")

    def handle(self, *args, slug: str, **options) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        now = timezone.now()
        rows = [
            (
                api_key.key_id,
                key_state(api_key, now),
                api_key.rpm,
                api_key.tpm,
                api_key.max_concurrency,
                api_key.budget and f"{api_key.budget}/{api_key.budget_period}",
                ",".join(api_key.allowed_models),
                ",".join(api_key.allowed_ips),
                when(api_key.expires_at),
                when(api_key.last_used_at),
                api_key.name,
            )
            for api_key in ApiKey.objects.for_tenant(tenant).order_by("created_at", "id")
        ]
        header = (
            "KEY_ID",
            "STATE",
            "RPM",
            "TPM",
            "CONCURRENCY",
            "BUDGET",
            "MODELS",
            "IPS",
            "EXPIRES",
            "LAST_USED",
            "NAME",
        )
        self.stdout.write(table(header, rows))
