from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import parse_date
from tenants.billing import SPEND_BY, billing_csv, billing_discrepancies, spend_by
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Check that every balance equals its ledger and every task's hold, capture and release lines add up; "
        "exit 1 naming each discrepancy. With --csv, write one row per task of the period; with --by, print "
        "the spend of the period's charged tasks per tag or per end user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="only this tenant (slug)")
        parser.add_argument("--since", help="tasks created on or after this ISO date")
        parser.add_argument("--until", help="tasks created before this ISO date")
        parser.add_argument("--csv", dest="csv_path", help="write the per-task CSV here")
        parser.add_argument("--by", choices=SPEND_BY, help="print spend per tag (key=value) or per end user")

    def handle(
        self,
        *args,
        tenant: str | None,
        since: str | None,
        until: str | None,
        csv_path: str | None,
        by: str | None,
        **options,
    ) -> None:
        scope = None
        if tenant is not None:
            scope = Tenant.objects.filter(slug=tenant).first()
            if scope is None:
                raise CommandError(f"no tenant {tenant!r}")
        period = {
            "since": parse_date(since, "--since") if since else None,
            "until": parse_date(until, "--until") if until else None,
        }
        if csv_path:
            with open(csv_path, "w", newline="") as out:
                rows = billing_csv(out, tenant=scope, **period)
            self.stdout.write(f"wrote {rows} tasks to {csv_path}")
        if by:
            for row in spend_by(by, tenant=scope, **period):
                slug, *name, tasks, credits = row
                self.stdout.write(f"{slug}\t{'='.join(name)}\t{tasks} tasks\t{credits} credits")
        problems = list(billing_discrepancies(tenant=scope, **period))
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} billing discrepancies")
        self.stdout.write("books balance: every balance matches its ledger and every task its lines")
