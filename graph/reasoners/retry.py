"""Retry storm: retries beyond what retryable failures explain, payments running out of attempts.

It multiplies every other symptom, so the rule engine checks it before attribution. A
storm is the platform's retry policy unless one route carries nearly all of it.
"""

from __future__ import annotations

from payops.models import Category
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import error_mix, family_counts, first_attempts, pct, repeat_retries, retryable_failures
from .findings import CONFIDENCE_CAP, FIRST_WINDOW_PENALTY, Finding
from .findings import clip as _clip
from .findings import first_window as _first_window

# Retry storm: attempts per payment at least this far above normal (fewer extra attempts
# are not worth a policy change)...
RETRY_STORM_FACTOR = 1.05
NORMAL_ATTEMPTS_PER_PAYMENT = 1.02  # ...with no baseline yet (a sane policy retries only outages)
# ...and either retries that retryable failures cannot explain (declines being retried) or
# this many payments running out of attempts: one or two can be stragglers, a handful in
# one window means the policy retries hard.
RETRY_EXHAUSTED_MIN = 3
# ...or payments retried again and again: a policy that retries a failure once never makes a
# second retry of one payment, so this many repeat retries, forming this share of all retries
# (a retry whose first attempt fell in the previous window looks like one), is the policy.
RETRY_REPEAT_MIN = 5
RETRY_REPEAT_SHARE = 0.3
# A storm is blamed on one segment only when it carries nearly all unexplained retries;
# a retry policy is usually platform configuration.
STORM_LOCAL_SHARE = 0.9
# ...and when the rest of traffic had this many times the minimum excess in declines that
# a platform-wide storm would have retried (the first window of a storm is partly normal).
STORM_LOCAL_OPPORTUNITY = 3


def excess_retries(seg: SegmentStats) -> tuple[float, float, float]:
    """Retries in the segment, retries its usual attempts per payment predict, and the Poisson z of the
    difference: a retry storm's evidence (its failures may be as usual)."""
    normal = seg.baseline_attempts_per_payment or NORMAL_ATTEMPTS_PER_PAYMENT
    firsts = first_attempts(seg)
    retries = seg.attempts - firsts
    expected = max(firsts * (normal - 1.0), 1.0)
    return retries, expected, (retries - expected) / expected ** 0.5


def retry_storm(snapshot: WindowSnapshot, context: ReasoningContext) -> Finding | None:
    t = context.thresholds
    total = snapshot.total
    if total.attempts < t.min_segment_attempts:
        return None
    normal = total.baseline_attempts_per_payment or NORMAL_ATTEMPTS_PER_PAYMENT
    retries, expected_retries, retry_z = excess_retries(total)
    if retries - expected_retries < t.min_excess_failures or retry_z < t.significance_z:
        return None
    retryable = retryable_failures(total)
    # Under a sane policy every retry follows a retryable failure; the rest are declines,
    # limits or fraud flags being retried.
    unexplained = retries - retryable
    if total.attempts_per_payment < RETRY_STORM_FACTOR * normal and not _retries_are_the_rise(
            total, min(unexplained, retries - expected_retries)):
        return None
    exhausted = total.errors.get("RETRY_EXHAUSTED", 0)
    repeats = repeat_retries(total)
    repeating = repeats >= RETRY_REPEAT_MIN and repeats >= RETRY_REPEAT_SHARE * retries
    if unexplained < t.min_excess_failures and exhausted < RETRY_EXHAUSTED_MIN and not repeating:
        return None

    target_seg, where = total, "all traffic"
    local = storm_segment(snapshot, unexplained, t.min_excess_failures)
    if local is not None:
        target_seg, where = local, local.key
    apm_factor = total.attempts_per_payment / normal
    conf = (0.62
            + 0.12 * _clip((apm_factor - 1.0) / 0.3)
            + 0.12 * _clip(unexplained / (3.0 * t.min_excess_failures))
            + 0.11 * _clip(max(exhausted / (3.0 * RETRY_EXHAUSTED_MIN),
                               repeats / (3.0 * RETRY_REPEAT_MIN) if repeating else 0.0)))
    if _first_window(context):
        conf -= FIRST_WINDOW_PENALTY
    evidence = (
        f"attempts per payment {total.attempts_per_payment:.2f} vs normal {normal:.2f} ({apm_factor:.2f}x); "
        f"{retries:.0f} retries vs {expected_retries:.0f} expected (z={retry_z:.1f})",
        f"{max(unexplained, 0):.0f} retries beyond the {retryable:.0f} retryable failures (declines and limits are "
        "being retried)",
        f"RETRY_EXHAUSTED on {exhausted} attempts ({pct(exhausted / total.failures if total.failures else 0.0)} of "
        "failures)",
        f"{repeats:.0f} retries beyond one per failed first attempt: payments retried again and again",
        f"all traffic: {total.failures}/{total.attempts} failed ({pct(total.failure_rate)}); errors {error_mix(total)}",
    )
    alternatives = (
        "an outage under a sane retry policy: retries would follow its retryable failures only; "
        f"here {max(unexplained, 0):.0f} retries have no retryable failure behind them",
        "user-related surge: the declines are real but multiplied by retries, so the policy is the fault",
    )
    return Finding(Category.CONFIG, target_seg, round(min(CONFIDENCE_CAP, conf), 3),
                   f"Retry storm: the retry policy multiplies attempts per payment on {where} "
                   "(retry misconfiguration).",
                   evidence, alternatives, "retry")


def _retries_are_the_rise(total: SegmentStats, extra_declines_retried: float) -> bool:
    """A few extra attempts per payment are not worth a policy change (RETRY_STORM_FACTOR), unless they
    are the window's whole rise in failures: declines retried beyond the usual retries at least as many
    as the excess failures (a storm's first, part-filled window). Without them the window would look
    normal, and reading it as customers declining more (a decline surge, no action) would be wrong."""
    return total.excess_failures > 0 and extra_declines_retried >= total.excess_failures


def storm_segment(snapshot: WindowSnapshot, unexplained_total: float, min_excess: int) -> SegmentStats | None:
    """The one route that carries nearly all unexplained retries, if the rest plainly does not.

    "Plainly" needs opportunity: the rest of traffic must have had enough declines
    that a global storm would have retried, yet retried none of them.
    """
    if unexplained_total <= 0:
        return None
    total = snapshot.total
    total_fam = family_counts(total.errors, total.failures)
    best: SegmentStats | None = None
    # Retry policies are configured for the platform or per processor, so a local storm is a route's.
    for seg in snapshot.by_dimension("route"):
        fam = family_counts(seg.errors, seg.failures)
        unexplained = (seg.attempts - first_attempts(seg)) - retryable_failures(seg)
        rest_declines = total_fam["user"] - fam["user"]
        if (unexplained >= STORM_LOCAL_SHARE * unexplained_total
            and rest_declines >= STORM_LOCAL_OPPORTUNITY * min_excess
                and (best is None or seg.attempts < best.attempts)):
            best = seg
    return best
