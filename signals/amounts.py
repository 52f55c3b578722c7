"""Which payment amounts count as "low": the amounts card testers use to check stolen cards.

Card testing (enumeration) runs many tiny charges, each on another card, because a
small charge passes unnoticed by the cardholder and by most velocity limits. The
window counts such attempts per segment (`SegmentStats.low_amount_attempts`), so
a burst of them at one merchant or terminal is visible without payment-level data.

The bar is about one US dollar or less in each currency's major units. Currencies
whose major unit is worth far less than a dollar are listed with their own bar;
any other currency (and an event without a currency, which CONTRACT.md §1 reads as
ZAR) uses its listed bar or DEFAULT_LOW_AMOUNT. An event without an amount is
never low.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

DEFAULT_CURRENCY = "ZAR"  # CONTRACT.md §1: a missing currency is ZAR
# About one US dollar or less: a tester's charge, not a purchase (a coffee costs more).
DEFAULT_LOW_AMOUNT = 1.0
LOW_AMOUNT_BY_CURRENCY: Mapping[str, float] = {
    # Major units worth well under a dollar: the same ~1 USD bar in their own units.
    "ZAR": 20.0, "NGN": 1500.0, "KES": 130.0, "GHS": 15.0, "EGP": 50.0, "MAD": 10.0, "TZS": 2500.0, "UGX": 3700.0,
    "ZMW": 25.0, "BWP": 14.0, "MUR": 45.0, "INR": 85.0, "JPY": 150.0, "CNY": 7.0, "BRL": 5.0, "MXN": 18.0,
    "TRY": 35.0, "IDR": 16000.0, "PHP": 57.0, "THB": 35.0, "KRW": 1400.0, "RUB": 90.0, "SEK": 10.0, "NOK": 10.0,
    "DKK": 7.0, "PLN": 4.0, "CZK": 23.0, "HUF": 360.0,
}


def low_amount_bar(currency: str | None) -> float:
    return LOW_AMOUNT_BY_CURRENCY.get(currency or DEFAULT_CURRENCY, DEFAULT_LOW_AMOUNT)


def low_amount_mask(amounts: np.ndarray, currencies: Iterable[str | None] | None = None) -> np.ndarray:
    """True where the amount is at or below its currency's bar (NaN: no amount, never low).

    `currencies` is one value per row, or None for all-ZAR (the contract's default).
    """
    if currencies is None:
        return amounts <= low_amount_bar(None)
    codes: dict[str | None, int] = {}
    index = np.fromiter((codes.setdefault(c, len(codes)) for c in currencies), np.int64, amounts.shape[0])
    bars = np.fromiter((low_amount_bar(c) for c in codes), np.float64, len(codes))
    return amounts <= bars[index] if len(codes) else np.zeros(amounts.shape[0], bool)
