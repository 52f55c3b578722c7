"""What a reasoner stage concludes before an action is chosen (the finding, and which name to act on),
and what the stages (rules, classification, latency, retry, patterns) share to get there."""

from __future__ import annotations

from dataclasses import dataclass

from payops.models import Category
from payops.signals.baseline import BASELINE_MIN_WINDOWS, binomial_z
from payops.signals.window import SegmentStats

from .base import ReasoningContext
from .evidence import Rest, judged_on_own_history, rest_of

# When two segments carry the same traffic, blame the one an operator can act on.
DIMENSION_PREFERENCE = ("terminal_id", "route", "bank", "method", "issuer", "merchant_id", "region")


@dataclass(frozen=True)
class Finding:
    category: Category
    segment: SegmentStats | None
    confidence: float
    summary: str
    evidence: tuple[str, ...]
    alternatives: tuple[str, ...]
    # route, issuer, issuer_route, scheme, scheme_route, system, terminal, latency, retry, routing, user, security,
    # method, segment, healthy,
    # and from patterns.py: card_testing, volume, anomaly; from feed.py: no_data
    kind: str
    pooled_windows: int = 1

    @property
    def target(self) -> dict[str, str]:
        return self.segment.target if self.segment is not None and self.category is not Category.HEALTHY else {}


# Share of a segment's excess that must be declines or limits for it to read as customers' declines.
USER_SURGE_PURITY = 0.75


# -- a rise plain whatever its name ------------------------------------------------------
# A rise is reported, named or not, when the failure rate is this many times its reference (and
# significant): an operator would rather be paged than told all is well.
ELEVATED_RATE_FACTOR = 1.5
# A single segment's rise must be plainer still: significance at this multiple of the bar and this
# multiple of the minimum excess (segments are many; chance finds one).
PLAIN_SEGMENT_Z_FACTOR = 2.0
PLAIN_SEGMENT_EXCESS_FACTOR = 3.0


def elevated(seg: SegmentStats, z_bar: float, min_excess: float) -> bool:
    """Significant, material and well above the segment's own trusted reference."""
    return (judged_on_own_history(seg) and seg.z >= z_bar and seg.excess_failures >= min_excess
            and seg.failure_rate >= ELEVATED_RATE_FACTOR * seg.expected_failure_rate)


def plain_rise(seg: SegmentStats, context: ReasoningContext) -> bool:
    """A segment's rise no operator would call chance, whatever caused it."""
    t = context.thresholds
    return seg.attempts >= t.min_segment_attempts and elevated(
        seg, PLAIN_SEGMENT_Z_FACTOR * t.significance_z, PLAIN_SEGMENT_EXCESS_FACTOR * t.min_excess_failures)


# -- what the stages share -------------------------------------------------------------
# Two segments whose scan statistics differ by less than this share describe the same
# traffic under two names (route=X and method=card,route=X when X carries only card).
TIE_TOLERANCE = 0.02
# Explaining away upwards: the rest of a broader segment rising above its reference by this share of
# the blamed segment's rise is the same fault spreading wider, not a second one (see rises_less).
SAME_FAULT_RATE_SHARE = 0.5
# Explaining away downwards: a narrower segment takes the blame only when the rest of the
# blamed one is plainly normal (below this z), not merely short of the significance bar.
REST_CLEAN_Z = 2.0
FIRST_WINDOW_PENALTY = 0.04  # first window after onset: no confirmation from a second window yet
COLD_START_PENALTY = 0.1  # reference is the other traffic, not the segment's own history
CONFIDENCE_CAP = 0.97


@dataclass(frozen=True)
class Scored:
    seg: SegmentStats
    fit: float  # scan statistic (log-likelihood ratio)


def dimension_rank(seg: SegmentStats) -> tuple[int, ...]:
    return tuple(sorted(DIMENSION_PREFERENCE.index(k) if k in DIMENSION_PREFERENCE else 99 for k, _ in seg.dims))


def cold(seg: SegmentStats, context: ReasoningContext) -> bool:
    """True when the segment's reference is other traffic rather than its own trusted history.

    Early in a run (fewer windows seen than a baseline needs) every reference is
    the peers; later, a segment with a baseline it does not trust yet is sparse. A
    segment never seen before (no baseline at all) in a run with history is new
    traffic, e.g. a method pushed onto a route: its peers are the fair reference.
    """
    if len(context.history) < BASELINE_MIN_WINDOWS:
        return True
    return seg.baseline_failure_rate is not None and not judged_on_own_history(seg)


def rises_less(rest: Rest, part: SegmentStats) -> bool:
    """The rest of a broader segment rises above its reference by well under what the part does
    (SAME_FAULT_RATE_SHARE of the part's rise): the part concentrates the trouble. Rises, not raw
    rates: a segment that normally declines 9% fails 13% beside a part at 22% — a third of the rise,
    though two thirds of the rate. The test that climbs (the same fault spreading) is its negation,
    so descending and climbing cannot undo each other."""
    return (rest.failure_rate - rest.expected_rate
            < SAME_FAULT_RATE_SHARE * (part.failure_rate - part.expected_failure_rate))


def first_window(context: ReasoningContext) -> bool:
    return context.previous is None or context.previous.category is Category.HEALTHY


def clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def rest_clean(rest: Rest, min_excess: float) -> bool:
    """The rest fails as usual: below REST_CLEAN_Z over its reference, or a stray failure or two above
    it (under half the minimum excess). Explaining-away, "all of it is here" and "over" judge alike."""
    return rest.excess < min_excess / 2.0 or rest.z < REST_CLEAN_Z


def rest_fails(rest: Rest, seg: SegmentStats, context: ReasoningContext, z_bar: float | None = None,
               kind_rises_less: bool = True) -> bool:
    """The rest of a broader segment fails too: the same fault spreading. `kind_rises_less`: whether the rest
    rises less in the part's kind of failure too (rests.rises_less_in_kind); when it has risen as far in
    that kind, it does not rise less, whatever its other failures make of the all-failure reading."""
    t = context.thresholds
    return (rest.attempts >= t.min_segment_attempts and rest.excess >= t.min_excess_failures / 2.0
            and rest.z >= (t.significance_z if z_bar is None else z_bar)
            and not (rises_less(rest, seg) and kind_rises_less))


# Nested segments whose attempts (and failures) differ by at most this share are the same traffic.
SAME_TRAFFIC_SHARE = 0.05
STRAY_ATTEMPTS = 2.0  # ...or by a payment or two at low volume (19 and 18 attempts)


def same_traffic(a: SegmentStats, b: SegmentStats, min_attempts: int = 0) -> bool:
    """Two nested segments that differ by a few stray attempts (a route that carries one scheme but for
    a payment or two) name the same traffic: the one to act on is chosen as for identical ones. Unless the
    difference is enough to judge (`min_attempts`) and plainly works while the other fails: a route's 13 VISA
    payments, 12 through, beside its 279 Mastercard ones failing 87 % say the fault is Mastercard's there."""
    if not (abs(a.attempts - b.attempts) <= max(STRAY_ATTEMPTS, SAME_TRAFFIC_SHARE * max(a.attempts, b.attempts))
            and abs(a.failures - b.failures) <= max(1.0, SAME_TRAFFIC_SHARE * max(a.failures, b.failures))):
        return False
    broad, narrow = (a, b) if a.attempts >= b.attempts else (b, a)
    rest = rest_of(broad, narrow)
    return not (min_attempts and rest.attempts >= min_attempts
                and binomial_z(rest.failures, rest.attempts, narrow.failure_rate) <= -REST_CLEAN_Z)
