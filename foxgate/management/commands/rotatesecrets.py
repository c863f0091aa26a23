from django.core.management.base import BaseCommand
from django.db import transaction

from foxgate.crypto import reencrypt
from tasks.models import Channel
from tenants.models import Tenant, WebhookEndpoint

# Every secret encrypted at rest: the model, its encrypted column, what it is called in the report
ENCRYPTED = (
    (Channel, "api_key_encrypted", "channel API keys"),
    (WebhookEndpoint, "secret_encrypted", "webhook secrets"),
    (Tenant, "callback_secret_encrypted", "callback secrets"),
)


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (upstream API keys, webhook and callback signing secrets) with the "
        "first key of FOXGATE_SECRET_KEYS, after which older keys can be removed from the list."
    )

    def handle(self, *args, **options) -> None:
        counts = []
        with transaction.atomic():
            for model, column, name in ENCRYPTED:
                count = 0
                for row in model.objects.select_for_update().exclude(**{column: ""}):
                    setattr(row, column, reencrypt(getattr(row, column)))
                    row.save(update_fields=[column])
                    count += 1
                counts.append(f"{count} {name}")
        self.stdout.write(f"re-encrypted {', '.join(counts)} with the newest key")
