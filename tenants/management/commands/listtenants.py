from django.core.management.base import BaseCommand
from django.db.models import Count, Q

from foxgate.cli import table
from tenants.models import Tenant


class Command(BaseCommand):
    help = "List tenants, one a line under a header: status, group, credits, live keys, limits, name."

    def handle(self, *args, **options) -> None:
        tenants = Tenant.objects.annotate(
            live_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True))
        ).order_by("slug")
        rows = [
            (
                tenant.slug,
                tenant.status,
                tenant.group,
                tenant.balance,
                tenant.held,
                tenant.available,
                tenant.live_keys,
                tenant.rpm,
                tenant.budget and f"{tenant.budget}/{tenant.budget_period}",
                tenant.name,
            )
            for tenant in tenants
        ]
        header = ("SLUG", "STATUS", "GROUP", "BALANCE", "HELD", "AVAILABLE", "KEYS", "RPM", "BUDGET", "NAME")
        self.stdout.write(table(header, rows))
