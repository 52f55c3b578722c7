"""Palm-pay rules as pure functions over plain values (no I/O, no clock reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .models import ACTIVE


def local_day(at: float | datetime, tz: ZoneInfo) -> str:
    """The local calendar date (ISO) of an instant; the daily counter resets when it changes.

    Works from the absolute instant, so DST shifts never move midnight.
    """
    instant = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return instant.astimezone(tz).date().isoformat()


def ledger_day(today: str, latest_day: str | None) -> str:
    """The ledger row a payment counts on: today's, unless the link already has a later one.

    Time on one link never runs backwards: a writer whose clock is behind (skewed by
    seconds at midnight, or moved back hours) counts on the latest day the link has seen,
    so it cannot open a fresh allowance on a day that already passed. A clock that jumped
    forward only brings that day's allowance early; it never adds one.
    """
    return today if latest_day is None or today >= latest_day else latest_day


def spent_on(day: str, counter_day: str | None, counter_cents: int) -> int:
    """daily_spent as seen on `day`: the stored counter only counts for the day it was kept."""
    return counter_cents if counter_day == day else 0


def match_accepted(score: float, threshold: float) -> bool:
    """The spec says the match must *exceed* the threshold."""
    return score > threshold


def verification_expired(created_at: float, now: float, ttl_seconds: float) -> bool:
    return now - created_at >= ttl_seconds


def fraud_suspension_due(failure_times: Iterable[float], now: float, window_seconds: float, limit: int) -> bool:
    """True when `limit` failed matches fall within the last `window_seconds`."""
    return sum(1 for t in failure_times if now - window_seconds < t <= now) >= limit


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    """What the rules say about one payment attempt on a matched link.

    `refusal` is a spec error code or None; `outcome` is the spec outcome it
    realises; `resolved` says whether the proxy was resolved first (the spec
    resolves once the link is active and the daily limit not yet reached).
    """

    refusal: str | None
    outcome: str
    resolved: bool


def decide_payment(
    *,
    link_status: str,
    spent_cents: int,
    reserved_cents: int,
    daily_limit_cents: int,
    transaction_limit_cents: int,
    amount_cents: int,
) -> PaymentDecision:
    if link_status != ACTIVE:
        return PaymentDecision("PALM_PAY_LINK_INACTIVE", "palm_link_inactive", resolved=False)
    # Money held by pending payments counts as spent until the rail settles it.
    used = spent_cents + reserved_cents
    if used >= daily_limit_cents:
        return PaymentDecision("PALM_PAY_DAILY_LIMIT", "daily_limit_exceeded", resolved=False)
    if amount_cents > transaction_limit_cents:
        return PaymentDecision("PALM_PAY_TRANSACTION_LIMIT", "transaction_limit_exceeded", resolved=True)
    if used + amount_cents > daily_limit_cents:
        return PaymentDecision("PALM_PAY_DAILY_LIMIT", "daily_limit_exceeded", resolved=True)
    return PaymentDecision(None, "palm_payment_completed", resolved=True)
