"""Parsers and helpers shared by the operator commands: bad input exits non-zero with a clear message."""

import getpass
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from tenants.models import ApiKey
from tenants.services import Actor

_RELATIVE = re.compile(r"^(?P<count>\d+)(?P<unit>[mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def cli_actor() -> Actor:
    """The operator running a command, for the audit log."""
    return Actor(f"cli:{getpass.getuser()}", source=socket.gethostname())


def parse_credits(value: str, what: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{what} must be a number, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CommandError(f"{what} must be a non-negative number, not {value!r}")
    return amount


def parse_when(value: str, what: str) -> datetime:
    """A future moment: `30d`, `12h`, `45m` from now, or an ISO date or date-time (UTC if no zone)."""
    match = _RELATIVE.match(value)
    if match:
        when = timezone.now() + timedelta(**{_UNITS[match["unit"]]: int(match["count"])})
    else:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise CommandError(f"{what} must be like 30d, 12h, 45m or an ISO date, not {value!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when <= timezone.now():
        raise CommandError(f"{what} must be in the future, not {value!r}")
    return when


def parse_date(value: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{what} must be an ISO date such as 2026-11-01, not {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def find_key(value: str) -> ApiKey:
    """A key by its id or by the whole key as issued, so an operator can paste a leaked key to kill it."""
    parts = ApiKey.split(value.strip())
    key_id = parts[0] if parts else value.strip()
    api_key = ApiKey.objects.select_related("tenant").filter(key_id=key_id).first()
    if api_key is None:
        raise CommandError(f"no API key with id {key_id!r}")
    return api_key


def refusal_error(error: ValidationError, flags: dict[str, str]) -> CommandError:
    """A service's refusal (ValidationError naming fields) as a command-line error naming the flags."""
    named = [f"{flags.get(field, field)}: {' '.join(texts)}" for field, texts in error.message_dict.items()]
    return CommandError("; ".join(named))


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows under a header, in columns two spaces apart, one row per line: stable for grep and diff.

    An empty value prints as '-', so every line has as many fields as the header; only the last column
    may hold spaces (names, reasons), so `awk '{print $1}'` and the like stay reliable."""
    lines = [[str(cell) if cell not in (None, "") else "-" for cell in row] for row in [header, *rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    padded = [[cell.ljust(width) for cell, width in zip(line, widths, strict=False)] for line in lines]
    rows_out = ("  ".join([*cells, line[-1]]).rstrip() for cells, line in zip(padded, lines, strict=True))
    return "\n".join(rows_out)
