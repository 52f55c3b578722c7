"""Did an action work? Before/after figures of the traffic it touched, and a verdict.

An executed action that changes traffic (reroute, retry policy, suppression) is
judged on the figures of three scopes, pooled over the windows after it took
effect (`memory.outcomes` does the watching):

- target:       the segment the action named (it may empty out: a reroute moves
                its traffic away, a suppression stops it);
- destinations: where the traffic went (a reroute's destination routes, a
                suppression's fallback method); none for a retry policy;
- platform:     all traffic — every payment the action could have helped or hurt
                ends up here, so an emptied target is still judged.

`judge` is a pure function from those figures (plus the baselines and the
target's previous window) to helped / no_effect / harmed / inconclusive, with
the reasons in words. The thresholds are below, each with why.

Known limits: payments already under way when the action took effect still
finish in its first window (timeouts last 8-30 s), so a target is judged on its
own only while it keeps most of its traffic (CARRY_SHARE); an incident that ends
by itself during the evaluation is credited to the action unless the target was
already recovering the window before; a rise in failures is blamed on the action
even if the incident grew on its own (a rollback is cheap).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

Verdict = Literal["helped", "no_effect", "harmed", "inconclusive"]

# Fewer platform attempts than this after the action supports no conclusion.
MIN_AFTER_ATTEMPTS = 30
# A scope (target, destinations) is judged on its own only with this many attempts.
MIN_SCOPE_ATTEMPTS = 20
# The target still "carries" its traffic after the action only if it kept at least half of
# its attempts per window. A reroute or suppression empties it, and what trickles in after
# are payments already under way (timeouts of 8-30 s, their retries): mostly failures that
# say nothing about the action.
CARRY_SHARE = 0.5
# Harm: ~3 sigma, as the signals use to call a segment anomalous — a harm verdict rolls
# the action back, and a good action must not be rolled back on noise.
SIGNIFICANCE_Z = 3.0
# Improvement: 2.5 sigma (~0.6% one-sided). Crediting "helped" only adds one weighted
# pseudo-observation to a Beta track record, so it may be a little less strict, but a
# lucky minute must still not count. A full fix of a small segment (a terminal at ~2%
# of traffic) shows on the platform at about 3 sigma over EVAL_WINDOWS windows.
IMPROVEMENT_Z = 2.5
# A failure-rate change below 2 points is not operationally meaningful even when
# high volume makes it statistically significant.
MIN_RATE_CHANGE = 0.02
# "Helped" must close at least half of the excess over the baseline, not just nudge it.
HELPED_GAP_SHARE = 0.5
# Successes per window may fall this much before it counts as harm: volume moves
# minute to minute (Poisson noise and the daily wave), and the test below is one-sided.
SUCCESS_DROP_TOLERANCE = 0.15
# p95 latency this many times worse is harm; this many times better is an improvement.
LATENCY_CHANGE_FACTOR = 1.5
# ... but only when it moved by at least this much (latency buckets are coarse).
MIN_LATENCY_CHANGE_MS = 150.0
# Attempts per payment this far up means the action amplified retries (cf. the
# rule reasoner's retry-storm factor of 1.15).
RETRY_AMPLIFICATION = 1.15
MIN_RETRY_CHANGE = 0.1


class SegmentLike(Protocol):
    """What `Figures.of` reads: a `signals.window.SegmentStats` fits.

    Read-only properties, not plain fields: the window's stats are frozen, and a protocol field
    would ask for a settable attribute.
    """

    @property
    def attempts(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def latency_p95_ms(self) -> float: ...
    @property
    def attempts_per_payment(self) -> float: ...


@dataclass(frozen=True)
class Figures:
    """Counts and latency of one scope over `windows` windows.

    Latency and attempts per payment of pooled windows or segments are
    attempt-weighted means of the per-window values (a true pooled p95 would need
    the raw latencies, which the window has already evicted).
    """

    attempts: int = 0
    failures: int = 0
    latency_p95_ms: float = 0.0
    attempts_per_payment: float = 0.0
    windows: int = 0

    @classmethod
    def of(cls, segment: SegmentLike | None) -> Figures:
        """One window of one segment; an absent segment carried no traffic."""
        if segment is None:
            return cls(windows=1)
        return cls(int(segment.attempts), int(segment.failures), float(segment.latency_p95_ms),
                   float(segment.attempts_per_payment), 1)

    @classmethod
    def union(cls, parts: Iterable[Figures]) -> Figures:
        """Several disjoint segments of the same window (e.g. two destination routes)."""
        parts = list(parts)
        merged = cls.pooled(parts)
        return replace(merged, windows=max((p.windows for p in parts), default=0))

    @classmethod
    def pooled(cls, parts: Iterable[Figures]) -> Figures:
        """The same scope over consecutive windows: counts add, windows add."""
        parts = list(parts)
        attempts = sum(p.attempts for p in parts)
        failures = sum(p.failures for p in parts)

        def weighted(name: str) -> float:
            return sum(getattr(p, name) * p.attempts for p in parts) / attempts if attempts else 0.0

        return cls(attempts, failures, weighted("latency_p95_ms"), weighted("attempts_per_payment"),
                   sum(p.windows for p in parts))

    def plus(self, other: Figures) -> Figures:
        return Figures.pooled([self, other])

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def successes(self) -> int:
        return self.attempts - self.failures

    @property
    def successes_per_window(self) -> float:
        return self.successes / self.windows if self.windows else 0.0

    def to_json(self) -> dict[str, float]:
        out = asdict(self)
        out["latency_p95_ms"] = round(self.latency_p95_ms, 1)
        out["attempts_per_payment"] = round(self.attempts_per_payment, 3)
        out["failure_rate"] = round(self.failure_rate, 4)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Figures:
        if not raw:
            return cls()
        return cls(int(raw.get("attempts", 0)), int(raw.get("failures", 0)), float(raw.get("latency_p95_ms", 0.0)),
                   float(raw.get("attempts_per_payment", 0.0)), int(raw.get("windows", 0)))


@dataclass(frozen=True)
class Scopes:
    target: Figures = field(default_factory=Figures)
    platform: Figures = field(default_factory=Figures)
    destinations: Figures | None = None

    def plus(self, other: Scopes) -> Scopes:
        dest = None
        if self.destinations is not None or other.destinations is not None:
            dest = (self.destinations or Figures()).plus(other.destinations or Figures())
        return Scopes(self.target.plus(other.target), self.platform.plus(other.platform), dest)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target.to_json(), "platform": self.platform.to_json()}
        if self.destinations is not None:
            out["destinations"] = self.destinations.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Scopes:
        raw = raw or {}
        dest = raw.get("destinations")
        return cls(Figures.from_json(raw.get("target")), Figures.from_json(raw.get("platform")),
                   Figures.from_json(dest) if dest is not None else None)


@dataclass(frozen=True)
class Expected:
    """Reference failure rates (baseline, or the peers' rate while a baseline is young)."""

    target: float
    platform: float
    destinations: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {k: (round(v, 4) if v is not None else None) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Expected:
        return cls(float(raw["target"]), float(raw["platform"]),
                   float(raw["destinations"]) if raw.get("destinations") is not None else None)


@dataclass(frozen=True)
class OutcomeEvidence:
    """Everything `judge` looks at, all plain numbers."""

    tool: str
    before: Scopes  # the window the decision was taken in
    after: Scopes  # pooled windows after the action took effect
    expected: Expected
    prior_target: Figures | None = None  # the target one window before the decision, when it was already notable
    gives_up_target: bool = False  # a suppression with no fallback gives up the target's successes by design


@dataclass(frozen=True)
class OutcomeVerdict:
    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def detail(self) -> str:
        return "; ".join(self.reasons)


def two_proportion_z(f1: float, n1: float, f2: float, n2: float) -> float:
    """z of rate2 - rate1 (positive: the second is higher), pooled variance."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    p = (f1 + f2) / (n1 + n2)
    var = p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:
        return 0.0
    return (f2 / n2 - f1 / n1) / math.sqrt(var)


def _rate_change(before: Figures, after: Figures) -> tuple[float, float]:
    """(after - before failure rate, z of that change)."""
    z = two_proportion_z(before.failures, before.attempts, after.failures, after.attempts)
    return after.failure_rate - before.failure_rate, z


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rose(name: str, before: Figures, after: Figures) -> str | None:
    delta, z = _rate_change(before, after)
    if delta >= MIN_RATE_CHANGE and z >= SIGNIFICANCE_Z:
        return f"{name} failure rate rose {_pct(before.failure_rate)} -> {_pct(after.failure_rate)} (z={z:.1f})"
    return None


def _fell(before: Figures, after: Figures) -> bool:
    delta, z = _rate_change(before, after)
    return delta <= -MIN_RATE_CHANGE and z <= -IMPROVEMENT_Z


def carries(before: Figures, after: Figures) -> bool:
    """Did the target keep its traffic (a retry policy, a partial reroute), or was it emptied?"""
    if after.attempts < MIN_SCOPE_ATTEMPTS or not after.windows or not before.windows:
        return False
    return after.attempts / after.windows >= CARRY_SHARE * before.attempts / before.windows


def _harms(e: OutcomeEvidence) -> list[str]:
    b, a = e.before, e.after
    found: list[str] = []
    platform = _rose("platform", b.platform, a.platform)
    if platform:
        found.append(platform)
    if carries(b.target, a.target) and b.target.attempts >= MIN_SCOPE_ATTEMPTS:
        target = _rose("target", b.target, a.target)
        if target:
            found.append(target)
    if b.destinations is not None and a.destinations is not None and a.destinations.attempts >= MIN_SCOPE_ATTEMPTS:
        dest = _rose("destination", b.destinations, a.destinations)
        reference = e.expected.destinations if e.expected.destinations is not None else b.destinations.failure_rate
        if dest and a.destinations.failure_rate > reference + MIN_RATE_CHANGE:
            found.append(dest + f", above its reference {_pct(reference)}: the moved traffic fails there")
    if e.gives_up_target and b.target.attempts >= MIN_SCOPE_ATTEMPTS and b.target.successes > b.target.failures:
        # Giving up a path is worth it only while most of its attempts fail (the rule
        # reasoner's suppression threshold is the same 50%).
        found.append(f"the suppression gave up {b.target.successes_per_window:.0f} successes per window to avoid "
                     f"{b.target.failures / max(b.target.windows, 1):.0f} failures")
    # Success volume: a suppression without fallback gives up the target's successes on purpose.
    kept = b.platform.successes_per_window - (b.target.successes_per_window if e.gives_up_target else 0.0)
    after_sw = a.platform.successes_per_window
    if kept > 0 and after_sw < kept * (1.0 - SUCCESS_DROP_TOLERANCE):
        # One-sided Poisson test on the pooled successes.
        z = (kept * a.platform.windows - a.platform.successes) / math.sqrt(kept * a.platform.windows)
        if z >= SIGNIFICANCE_Z:
            found.append(f"successes per window fell {kept:.0f} -> {after_sw:.0f} (z={z:.1f})")
    touched_b, touched_a = _touched(e)
    if (touched_a.attempts >= MIN_SCOPE_ATTEMPTS and touched_b.latency_p95_ms > 0
            and touched_a.latency_p95_ms >= LATENCY_CHANGE_FACTOR * touched_b.latency_p95_ms
            and touched_a.latency_p95_ms - touched_b.latency_p95_ms >= MIN_LATENCY_CHANGE_MS):
        found.append(f"p95 latency rose {touched_b.latency_p95_ms:.0f} -> {touched_a.latency_p95_ms:.0f} ms")
    apm_b, apm_a = b.platform.attempts_per_payment, a.platform.attempts_per_payment
    if apm_b > 0 and apm_a >= RETRY_AMPLIFICATION * apm_b and apm_a - apm_b >= MIN_RETRY_CHANGE:
        found.append(f"attempts per payment rose {apm_b:.2f} -> {apm_a:.2f} (retries amplified)")
    return found


def _touched(e: OutcomeEvidence) -> tuple[Figures, Figures]:
    """Where the action's traffic is after: the target if it still carries it, else where it went."""
    if carries(e.before.target, e.after.target):
        return e.before.target, e.after.target
    if (e.after.destinations is not None and e.before.destinations is not None
            and e.after.destinations.attempts >= MIN_SCOPE_ATTEMPTS):
        return e.before.destinations, e.after.destinations
    return e.before.platform, e.after.platform


def _detectable(before: Figures, expected: float, after_attempts: int) -> bool:
    """Would a full return to the reference have been significant with this much traffic?"""
    gap = before.failure_rate - expected
    if gap < MIN_RATE_CHANGE:
        return False
    z = -two_proportion_z(before.failures, before.attempts, expected * after_attempts, after_attempts)
    return z >= IMPROVEMENT_Z


def judge(e: OutcomeEvidence) -> OutcomeVerdict:
    """helped / no_effect / harmed / inconclusive, with the reasons.

    1. Too little traffic after (< MIN_AFTER_ATTEMPTS platform attempts): inconclusive.
    2. Harmed when any of: the platform's failure rate rose (>= MIN_RATE_CHANGE and
       z >= SIGNIFICANCE_Z); the target's did while it still carries traffic; the
       destinations' did and now sit above their reference (the moved traffic fails
       there); successes per window fell more than SUCCESS_DROP_TOLERANCE beyond
       what a no-fallback suppression gives up; such a suppression gave up more
       successes than the failures it avoided (the target mostly succeeded); the touched traffic's p95 latency
       rose LATENCY_CHANGE_FACTOR-fold; attempts per payment rose
       RETRY_AMPLIFICATION-fold. A rise is blamed on the action even if the
       incident might have grown on its own: rolling back is cheap.
    3. Helped when the failure rate of the judged scope (the target while it still
       carries traffic, else the platform, which holds wherever the traffic went)
       fell (>= MIN_RATE_CHANGE, z <= -IMPROVEMENT_Z) and closed >= HELPED_GAP_SHARE of its gap to the
       reference; or p95 latency fell LATENCY_CHANGE_FACTOR-fold (a latency
       incident); or attempts per payment fell RETRY_AMPLIFICATION-fold (a retry
       storm tamed).
       If the target was already falling in the window before the decision, the
       recovery is not credited: inconclusive.
    4. Otherwise no_effect, if a full fix would have been detectable (at
       IMPROVEMENT_Z) with the traffic seen; else inconclusive (too small to measure).
    """
    a, b, x = e.after, e.before, e.expected
    if a.platform.attempts < MIN_AFTER_ATTEMPTS or a.platform.windows == 0:
        return OutcomeVerdict("inconclusive",
                              (f"too little traffic after the action ({a.platform.attempts} attempts)",))
    harms = _harms(e)
    if harms:
        return OutcomeVerdict("harmed", tuple(harms))

    on_target = carries(b.target, a.target)
    scope, sb, sa, reference = (("target", b.target, a.target, x.target) if on_target
                                else ("platform", b.platform, a.platform, x.platform))
    gap = sb.failure_rate - reference
    closed = (sb.failure_rate - sa.failure_rate) / gap if gap >= MIN_RATE_CHANGE else 0.0
    improved: list[str] = []
    if _fell(sb, sa) and closed >= HELPED_GAP_SHARE:
        share = "all" if closed >= 1.0 else f"{closed:.0%}"
        improved.append(f"{scope} failure rate fell {_pct(sb.failure_rate)} -> {_pct(sa.failure_rate)}, "
                        f"closing {share} of the gap to its reference {_pct(reference)}")
    faster = (sb.latency_p95_ms > 0 and sa.latency_p95_ms * LATENCY_CHANGE_FACTOR <= sb.latency_p95_ms
              and sb.latency_p95_ms - sa.latency_p95_ms >= MIN_LATENCY_CHANGE_MS)
    if faster:
        improved.append(f"{scope} p95 latency fell {sb.latency_p95_ms:.0f} -> {sa.latency_p95_ms:.0f} ms")
    apm_b, apm_a = b.platform.attempts_per_payment, a.platform.attempts_per_payment
    if apm_a > 0 and apm_b >= RETRY_AMPLIFICATION * apm_a and apm_b - apm_a >= MIN_RETRY_CHANGE:
        improved.append(f"attempts per payment fell {apm_b:.2f} -> {apm_a:.2f}")
    if improved:
        prior = e.prior_target
        if prior is not None and prior.attempts >= MIN_SCOPE_ATTEMPTS and _fell(prior, b.target):
            return OutcomeVerdict("inconclusive", (
                f"target was already recovering before the action "
                f"({_pct(prior.failure_rate)} -> {_pct(b.target.failure_rate)})",
                *improved))
        return OutcomeVerdict("helped", tuple(improved))
    change = f"{scope} failure rate {_pct(sb.failure_rate)} -> {_pct(sa.failure_rate)} (reference {_pct(reference)})"
    if _detectable(sb, reference, sa.attempts):
        return OutcomeVerdict("no_effect", (f"no significant change: {change}",))
    return OutcomeVerdict("inconclusive", (f"the excess was too small to measure a change: {change}",))

