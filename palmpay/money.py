"""Money is integer cents inside, Decimal major units at the edges; never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from payops.errors import BadInput

# Guard against values SQLite's 64-bit integers or a sane payment cannot hold.
MAX_CENTS = 10**13


class MoneyError(BadInput, ValueError):
    pass


def to_cents(value: Decimal | int | str) -> int:
    """Rand amount (Decimal, int or decimal string) -> integer cents. Floats are refused."""
    if isinstance(value, (bool, float)):
        raise MoneyError("amounts must be Decimal, int or a decimal string, not float")
    if isinstance(value, str) and not value.isascii():
        # Decimal() reads any Unicode digit ('３０００' is 3000): an amount must be what the terminal
        # displayed, so only ASCII digits are money.
        raise MoneyError("amount must be written with ASCII digits")
    if isinstance(value, int):
        cents = value * 100
    else:
        try:
            amount = Decimal(value) if isinstance(value, str) else value
        except InvalidOperation:
            raise MoneyError("amount is not a number") from None
        if not isinstance(amount, Decimal) or not amount.is_finite():
            raise MoneyError("amount is not a finite number")
        scaled = amount * 100
        if scaled != scaled.to_integral_value():
            raise MoneyError("amount has more than two decimal places")
        cents = int(scaled)
    if abs(cents) > MAX_CENTS:
        raise MoneyError("amount is too large")
    return cents


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def cents_str(cents: int) -> str:
    """Exact text form for JSON payloads, e.g. 1250 -> '12.50'."""
    return str(from_cents(cents))
