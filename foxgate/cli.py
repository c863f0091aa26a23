"""Small parsers shared by the operator commands: bad input exits non-zero with a clear message."""

from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError


def parse_credits(value: str, what: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{what} must be a number, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CommandError(f"{what} must be a non-negative number, not {value!r}")
    return amount
