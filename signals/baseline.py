"""Per-segment baselines of normal behaviour, and the significance of a deviation.

Baseline: an EWMA of failure rate, p95 latency, volume and attempts per payment,
fed only by windows where the segment looked normal (window.anomalous), so an
incident cannot drag its own reference along. Until a segment has
BASELINE_MIN_WINDOWS windows of history its reference is its peers (all other
traffic in the same window); the same normality test applies during that warm-up,
so an incident already under way when the agent starts is not learned either.

Significance: `binomial_z` is the one-sided score statistic of the observed
failures against the expected rate, z = (x - n p) / sqrt(n p (1 - p)). It grows
with sqrt(n) for the same rate gap, so it is sample-size aware: 2 failures out of
5 is weak evidence, 40% failures out of 800 is overwhelming. It is the statistic
whose inversion is the Wilson score interval: z >= Z exactly when the expected
rate lies below the Wilson lower bound at Z (`wilson_lower_bound`). The minimum
evidence a segment needs before anyone blames it (attempts, excess failures, z)
lives in Settings (min_segment_attempts, min_excess_failures, significance_z) and
is applied by the reasoner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

# EWMA weight of the newest healthy window: ~10 windows of memory, so a daily
# wave is followed but one odd minute barely moves the reference.
BASELINE_ALPHA = 0.1
# Windows of history before the baseline is trusted over the peer comparison.
BASELINE_MIN_WINDOWS = 3
# Failure-rate floor for the binomial test: real payment traffic never fails at 0%,
# and a zero reference would make a single failure look infinitely significant.
FAILURE_RATE_FLOOR = 0.01
# Windows (from the start) a segment may stay out of line with its peers before it
# is accepted as structurally different (e.g. EFT always failing more than cards):
# 30 minutes at 60 s ticks. Only untrusted baselines use it; a trusted baseline
# never learns an anomalous window.
BASELINE_PATIENCE = 30.0
# A window whose p95 latency exceeds the baseline by this factor, or whose attempts
# per payment exceed it by this factor, is not normal and is not learned.
LATENCY_OUTLIER_FACTOR = 2.0
RETRY_OUTLIER_FACTOR = 1.15


@dataclass
class SegmentBaseline:
    failure_rate: float
    latency_p95: float
    volume: float
    attempts_per_payment: float
    windows: float = 1.0  # windows of history (a window re-read by a short tick counts in part)
    # Windows of volume history: volume is learned also from windows whose failures were out of line
    # (`update_volume`). None (a baseline saved before this was kept): the same as `windows`.
    volume_windows: float | None = None

    def update(self, failure_rate: float, latency_p95: float, volume: float, attempts_per_payment: float,
               weight: float = 1.0) -> None:
        # Same memory in time whatever the tick; while the baseline has seen fewer windows than its
        # memory, each counts equally (the bias-corrected EWMA): otherwise the first window, however
        # thin, would weigh 0.9^k of the reference for k windows (0/41 failures in a first minute of
        # a platform that fails 10% made 0% its reference, and every later minute an "anomaly").
        a = _ewma_weight(self.windows, weight)
        self.failure_rate += a * (failure_rate - self.failure_rate)
        self.latency_p95 += a * (latency_p95 - self.latency_p95)
        self.attempts_per_payment += a * (attempts_per_payment - self.attempts_per_payment)
        self.windows += weight
        self.update_volume(volume, weight)

    def update_volume(self, volume: float, weight: float = 1.0) -> None:
        """Learn the window's attempts alone: a segment whose failures stay out of line with its peers'
        (a busy acquirer that always declines more) still has a usual volume to lose."""
        seen = self.windows - weight if self.volume_windows is None else self.volume_windows
        self.volume += _ewma_weight(seen, weight) * (volume - self.volume)
        self.volume_windows = seen + weight

    @property
    def trusted(self) -> bool:
        return self.windows >= BASELINE_MIN_WINDOWS - 1e-9

    @property
    def volume_trusted(self) -> bool:
        seen = self.windows if self.volume_windows is None else self.volume_windows
        return seen >= BASELINE_MIN_WINDOWS - 1e-9


def _ewma_weight(seen: float, weight: float) -> float:
    # Same memory in time whatever the tick; while the baseline has seen fewer windows than its
    # memory, each counts equally (the bias-corrected EWMA).
    return max(1.0 - float((1.0 - BASELINE_ALPHA) ** weight), weight / (seen + weight))


class BaselineTracker:
    """Baselines keyed by segment key ('bank=FNB', 'bank=FNB,route=psp_a', '*')."""

    def __init__(self) -> None:
        self.baselines: dict[str, SegmentBaseline] = {}
        self.skipped: dict[str, float] = {}  # untrusted segments: windows left out so far

    def get(self, key: str) -> SegmentBaseline | None:
        return self.baselines.get(key)

    def observe(self, key: str, failure_rate: float, latency_p95: float, volume: float, attempts_per_payment: float,
                weight: float = 1.0) -> None:
        known = self.baselines.get(key)
        if known is None:
            self.baselines[key] = SegmentBaseline(failure_rate, latency_p95, volume, attempts_per_payment,
                                                  weight, volume_windows=weight)
        else:
            known.update(failure_rate, latency_p95, volume, attempts_per_payment, weight)

    def observe_volume(self, key: str, volume: float, weight: float = 1.0) -> None:
        """Learn a window's attempts alone (its failures were out of line). A segment out of line from its
        first window gets a baseline of volume only (windows 0: no failure rate, latency or retries
        learned; the first normal window sets them whole)."""
        known = self.baselines.get(key)
        if known is None:
            self.baselines[key] = SegmentBaseline(0.0, 0.0, volume, 1.0, 0.0, volume_windows=weight)
        else:
            known.update_volume(volume, weight)

    def out_of_patience(self, key: str, weight: float = 1.0) -> bool:
        """Called for an anomalous window: True when the segment, never trusted, has been
        anomalous for BASELINE_PATIENCE windows and should now be learned as it is."""
        known = self.baselines.get(key)
        if known is not None and known.trusted:
            return False
        skipped = self.skipped.get(key, 0.0) + weight
        self.skipped[key] = skipped
        return skipped > BASELINE_PATIENCE

    def to_json(self) -> dict[str, Any]:
        return {key: asdict(b) for key, b in self.baselines.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaselineTracker:
        tracker = cls()
        for key, fields in data.items():
            tracker.baselines[key] = SegmentBaseline(**fields)
        return tracker


# "Most of its traffic vanished": a segment kept at most this share of what its usual volume, scaled by
# how its peers are doing now, predicts (a platform-wide dip scales both). The reasoner calls such a
# segment's drop an incident when it is significant (graph/reasoners/patterns.volume_drop)...
VOLUME_DROP_SHARE = 0.3
# ...and the window is not learned into its baseline when the shortfall is this many Poisson standard
# deviations: below the reasoner's significance, because withholding an ordinary quiet minute only leaves
# the reference as it was, while learning a black hole erases the incident.
VOLUME_COLLAPSE_Z = 2.0


def expected_volume(usual: float, now: float, total_now: float, total_usual: float) -> tuple[float, float] | None:
    """A segment's expected attempts in a window (its usual volume scaled by its peers' volume then) and
    that scale, or None when the segment is all traffic (nothing to compare it with). Peers surging (a sale)
    never raise a segment's expectation above its own usual volume: a surge alone is not an incident, and a
    segment that kept its traffic did not lose it."""
    peers_usual = total_usual - usual
    if peers_usual <= 0:
        return None
    peers_ratio = min(1.0, (total_now - now) / peers_usual)
    return usual * peers_ratio, peers_ratio


def volume_collapsed(now: float, usual: float, total_now: float, total_usual: float) -> bool:
    """Most of the segment's usual traffic missing while its peers kept theirs, by more than chance
    (VOLUME_COLLAPSE_Z): a window not to learn. Learned, a black-holed route's usual volume fell to its
    trickle in three or four minutes and the drop stopped being one while the acquirer still swallowed
    its requests."""
    here = expected_volume(usual, now, total_now, total_usual) if usual > 0 else None
    if here is None or here[0] <= 0:
        return False
    expected = here[0]
    return now <= VOLUME_DROP_SHARE * expected and (expected - now) / math.sqrt(expected) >= VOLUME_COLLAPSE_Z


def binomial_z(failures: float, attempts: float, expected_rate: float) -> float:
    """One-sided score z of observed failures against the expected rate; accounts for sample size."""
    if attempts <= 0:
        return 0.0
    p = min(max(expected_rate, FAILURE_RATE_FLOOR), 0.99)
    return (failures - attempts * p) / math.sqrt(attempts * p * (1.0 - p))


def record_z(failures: float, attempts: float, rate: float, record_attempts: float) -> float:
    """z of a window's failures against a reference rate that was itself measured on
    `record_attempts` attempts (the two-proportion score test): a reference read from a
    minute or two of thin traffic is a sample too, and 0 of 41 is no proof of a 0% rate."""
    if attempts <= 0 or record_attempts <= 0:
        return binomial_z(failures, attempts, rate)
    pooled = (rate * record_attempts + failures) / (record_attempts + attempts)
    p = min(max(pooled, FAILURE_RATE_FLOOR), 0.99)
    return (failures / attempts - rate) / math.sqrt(p * (1.0 - p) * (1.0 / attempts + 1.0 / record_attempts))


def binomial_tail_z(successes: int, trials: int, rate: float) -> float:
    """The normal score of the exact one-sided binomial mid-p tail P(X > k) + P(X = k) / 2.

    For a handful of expected events the normal approximation (`binomial_z`) is far too
    bold: 5 of 18 at 5% scores z=4.3, while chance gives that once in ~300 tries (z~2.7).
    """
    if trials <= 0:
        return 0.0
    if successes <= 0:
        return binomial_z(0, trials, rate)  # below expectation: the sign is all that matters
    p = min(max(rate, 1e-12), 1.0 - 1e-12)
    k = min(successes, trials)
    log_pmf_k = (math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
                 + k * math.log(p) + (trials - k) * math.log1p(-p))
    tail, term = 0.5, 1.0  # in units of P(X = k); terms fall fast above the mean
    for j in range(k + 1, trials + 1):
        term *= (trials - j + 1) / j * p / (1.0 - p)
        tail += term
        if term < 1e-12 * tail:
            break
    log_tail = log_pmf_k + math.log(tail)
    if log_tail >= math.log(0.5):
        return NormalDist().inv_cdf(max(1e-300, 1.0 - min(math.exp(log_tail), 1.0 - 1e-16)))
    # Far tail: inv_cdf of a tiny upper probability, via the lower one (symmetry).
    return -NormalDist().inv_cdf(max(math.exp(log_tail), 1e-300))


def wilson_lower_bound(failures: float, attempts: float, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval of a failure rate: what the rate is at least."""
    if attempts <= 0:
        return 0.0
    phat = failures / attempts
    denom = 1 + z * z / attempts
    centre = phat + z * z / (2 * attempts)
    margin = z * math.sqrt(max(phat * (1 - phat) / attempts + z * z / (4 * attempts * attempts), 0.0))
    return max(0.0, (centre - margin) / denom)
