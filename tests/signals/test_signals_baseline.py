"""Baselines that incidents cannot drag, and significance that respects sample size."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from payops.settings import Settings
from payops.signals.baseline import (
    BASELINE_PATIENCE,
    BaselineTracker,
    binomial_z,
    wilson_lower_bound,
)
from payops.signals.events import PaymentEvent
from payops.signals.window import EventWindow, WindowSnapshot

DEFAULTS = Settings()


def minute(start: float, groups: list[tuple[dict, int, float, str, float]]) -> list[PaymentEvent]:
    """Events spread over [start, start+60): (dims, attempts, failure share, error code, latency ms) per group."""
    out = []
    for dims, n, fail_share, code, latency in groups:
        failures = round(n * fail_share)
        for i in range(n):
            failed = i < failures
            out.append(PaymentEvent(
                ts=start + 60.0 * (i + 0.5) / n, payment_id=f"{start}-{i}", method=dims.get("method", "card"),
                route=dims.get("route", "psp_a"), bank=dims.get("bank", "BIG"), issuer=dims.get("issuer", "VISA"),
                status="failure" if failed else "success", error_code=code if failed else None, latency_ms=latency,
            ))
    return sorted(out, key=lambda e: e.ts)


HEALTHY = [({"bank": "BIG", "route": "psp_a"}, 400, 0.04, "INSUFFICIENT_FUNDS", 300.0),
           ({"bank": "OTHER", "route": "psp_b"}, 400, 0.04, "INSUFFICIENT_FUNDS", 300.0)]


def run(windows: list[list], tick: float = 60.0, window: float = 60.0) -> tuple[EventWindow, list[WindowSnapshot]]:
    w = EventWindow(window, significance_z=DEFAULTS.significance_z)
    snaps = []
    for i, groups in enumerate(windows):
        w.add(minute(i * 60.0, groups))
        end = i * 60.0 + 60.0
        t = end - 60.0 + tick
        while t <= end + 1e-9:
            snaps.append(w.snapshot(t))
            t += tick
    return w, snaps


def clears_settings_bar(seg, s: Settings = DEFAULTS) -> bool:
    """The minimum evidence of Settings (applied by the reasoner's candidates)."""
    return (seg.attempts >= s.min_segment_attempts and seg.excess_failures >= s.min_excess_failures
            and seg.z >= s.significance_z)


def test_two_failures_out_of_five_at_a_tiny_bank_is_not_an_incident() -> None:
    tiny = ({"bank": "TINY", "route": "psp_a"}, 5, 0.4, "ISSUER_DOWN", 300.0)
    _, snaps = run([HEALTHY + [tiny]])
    seg = snaps[-1].segment(bank="TINY")
    assert (seg.attempts, seg.failures) == (5, 2)
    assert seg.z >= DEFAULTS.significance_z  # z alone would cry wolf on 5 attempts...
    assert seg.attempts < DEFAULTS.min_segment_attempts and seg.excess_failures < DEFAULTS.min_excess_failures
    assert not clears_settings_bar(seg)  # ...the minimum-evidence settings do not


def test_forty_percent_timeouts_on_a_big_route_is_an_incident_in_the_first_window() -> None:
    outage = [({"bank": "BIG", "route": "psp_a"}, 800, 0.4, "GATEWAY_TIMEOUT", 300.0),
              ({"bank": "BIG", "route": "psp_b"}, 800, 0.04, "INSUFFICIENT_FUNDS", 300.0)]
    _, snaps = run([outage])  # no history at all: the route is compared with its peers
    seg = snaps[0].segment(route="psp_a")
    assert seg.baseline_failure_rate is None and seg.expected_failure_rate == pytest.approx(0.04)
    assert clears_settings_bar(seg) and seg.z > 10 * DEFAULTS.significance_z
    assert not clears_settings_bar(snaps[0].segment(route="psp_b"))


def test_z_grows_with_sample_size_for_the_same_rate_gap() -> None:
    zs = [binomial_z(0.2 * n, n, 0.05) for n in (5, 50, 500, 5000)]
    assert zs == sorted(zs) and zs[-1] / zs[0] == pytest.approx(math.sqrt(1000))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), share=st.floats(0, 1), p=st.floats(0.01, 0.99), z=st.floats(0.5, 6.0))
def test_score_z_clears_the_bar_exactly_when_the_wilson_lower_bound_is_above_the_reference(n, share, p, z) -> None:
    x = round(share * n)
    lower = wilson_lower_bound(x, n, z)
    assume(abs(lower - p) > 1e-9)
    assert (binomial_z(x, n, p) >= z) == (lower > p)


def test_an_incident_does_not_drag_the_baseline() -> None:
    incident = [({"bank": "BIG", "route": "psp_a"}, 400, 0.5, "ISSUER_DOWN", 300.0), HEALTHY[1]]
    w, snaps = run([HEALTHY] * 5 + [incident] * 10 + [HEALTHY] * 2)
    before = snaps[4].segment(bank="BIG").baseline_failure_rate
    during = [s.segment(bank="BIG") for s in snaps[5:15]]
    assert all(clears_settings_bar(seg) for seg in during)  # still an incident after 10 minutes
    assert all(seg.baseline_failure_rate == pytest.approx(before) for seg in during)
    assert w.baselines.get("bank=BIG").failure_rate == pytest.approx(0.04, abs=0.005)  # learning resumed after


def test_a_slow_route_does_not_teach_its_baseline_to_be_slow() -> None:
    slow = [({"bank": "BIG", "route": "psp_a"}, 400, 0.04, "INSUFFICIENT_FUNDS", 6000.0), HEALTHY[1]]
    _, snaps = run([HEALTHY] * 4 + [slow] * 8)
    assert all(s.segment(route="psp_a").baseline_latency_p95_ms == pytest.approx(311.0, rel=0.05) for s in snaps[4:])


def test_an_incident_under_way_at_start_is_not_learned_as_normal() -> None:
    sick = [({"bank": "SICK", "route": "psp_a"}, 300, 0.5, "ISSUER_DOWN", 300.0)]
    w, snaps = run([HEALTHY + sick] * 6)
    assert w.baselines.get("bank=SICK").windows == 0  # never normal against its peers: only its volume learned
    assert all(s.segment(bank="SICK").baseline_failure_rate is None for s in snaps)
    assert w.baselines.get("bank=BIG").trusted
    assert all(clears_settings_bar(s.segment(bank="SICK")) for s in snaps)


def test_a_segment_different_from_its_peers_for_long_is_accepted_as_it_is() -> None:
    tracker = BaselineTracker()
    learned_after = next(i for i in range(1, 100) if tracker.out_of_patience("method=eft"))
    assert learned_after == int(BASELINE_PATIENCE) + 1
    tracker.observe("bank=X", 0.1, 300.0, 100.0, 1.0)
    tracker.observe("bank=X", 0.1, 300.0, 100.0, 1.0)
    tracker.observe("bank=X", 0.1, 300.0, 100.0, 1.0)
    assert tracker.get("bank=X").trusted and not any(tracker.out_of_patience("bank=X") for _ in range(100))


def test_short_ticks_learn_in_time_not_in_ticks() -> None:
    """With a 5 s tick every window is re-read 12 times: the baseline needs 3 windows of time, not 3 ticks."""
    w, snaps = run([HEALTHY] * 4, tick=5.0)
    assert len(snaps) == 48
    assert w.baselines.get("route=psp_a").windows == pytest.approx(1 + 47 * 5.0 / 60.0)
    trusted = [s.segment(route="psp_a").expected_failure_rate == s.segment(route="psp_a").baseline_failure_rate
               for s in snaps]
    assert trusted.index(True) == 25  # 1 + 24 ticks x 5/60 = 3 windows of history
    assert all(trusted[25:])


def test_baselines_survive_a_checkpoint_round_trip() -> None:
    w, _ = run([HEALTHY] * 3)
    restored = BaselineTracker.from_json(w.baselines.to_json())
    assert restored.to_json() == w.baselines.to_json() and restored.get("*").trusted


def test_volume_against_baseline() -> None:
    half = [({"bank": "BIG", "route": "psp_a"}, 200, 0.04, "INSUFFICIENT_FUNDS", 300.0), HEALTHY[1]]
    _, snaps = run([HEALTHY] * 4 + [half])
    assert snaps[-1].segment(route="psp_a").volume_ratio == pytest.approx(0.5, abs=0.01)
    assert snaps[0].segment(route="psp_a").volume_ratio is None  # no trusted baseline yet


def test_a_quiet_first_minute_of_thin_traffic_does_not_become_the_platforms_reference() -> None:
    """40 payments a minute failing 10%: a first minute with none failed is a sample, not a 0% platform.
    Judged as exact, it made every later ordinary minute "anomalous" (z 6) and was never unlearned."""
    thin = [({"bank": "BIG", "route": "psp_a"}, 40, 0.1, "INSUFFICIENT_FUNDS", 300.0)]
    quiet = [({"bank": "BIG", "route": "psp_a"}, 40, 0.0, "INSUFFICIENT_FUNDS", 300.0)]
    w, snaps = run([quiet] + [thin] * 6)
    assert w.baselines.get("*").trusted
    assert w.baselines.get("*").failure_rate == pytest.approx(0.1 * 6 / 7, abs=0.01)  # every minute counted
    assert all(s.total.z < DEFAULTS.significance_z for s in snaps[3:])


def test_early_minutes_weigh_alike_in_a_young_baseline() -> None:
    """The bias-corrected EWMA: until it has a memory's worth of windows, each counts equally."""
    tracker = BaselineTracker()
    for rate in (0.0, 0.09, 0.12):
        tracker.observe("*", rate, 300.0, 40.0, 1.0)
    assert tracker.get("*").failure_rate == pytest.approx(0.07)
    for _ in range(40):
        tracker.observe("*", 0.1, 300.0, 40.0, 1.0)
    before = tracker.get("*").failure_rate
    tracker.observe("*", 0.2, 300.0, 40.0, 1.0)
    assert tracker.get("*").failure_rate - before == pytest.approx(0.1 * (0.2 - before))  # then the EWMA's own weight


def test_a_black_holed_route_does_not_teach_its_baseline_the_trickle() -> None:
    """90% of one route's requests stop arriving while the other route keeps its traffic: its usual
    volume stays what it was, so the drop is still a drop five minutes later."""
    gone = [({"bank": "BIG", "route": "psp_a"}, 40, 0.04, "INSUFFICIENT_FUNDS", 300.0), HEALTHY[1]]
    w, snaps = run([HEALTHY] * 4 + [gone] * 5)
    assert w.baselines.get("route=psp_a").volume == pytest.approx(400.0, rel=0.02)
    assert snaps[-1].segment(route="psp_a").volume_ratio == pytest.approx(0.1, abs=0.01)


def test_a_platform_wide_dip_is_still_learned_into_every_segments_volume() -> None:
    """A guard beside the one above (passes before it too): a dip its peers share is not a collapse."""
    night = [(dims, n // 4, share, code, ms) for dims, n, share, code, ms in HEALTHY]
    w, _ = run([HEALTHY] * 4 + [night] * 10)
    assert w.baselines.get("route=psp_a").volume < 0.6 * 400.0  # the quiet night is the new usual, for all
    assert w.baselines.get("route=psp_a").volume == pytest.approx(w.baselines.get("route=psp_b").volume)


def test_a_route_that_always_declines_more_than_its_peers_still_learns_its_volume() -> None:
    """A busy acquirer failing 12% beside peers at 4% is out of line in every window of its first half hour,
    so none was learned, its volume included: when 90% of its requests stopped arriving nothing said so,
    and the trickle became its usual volume. Its volume is learned apart from its failures."""
    declining = ({"bank": "BIG", "route": "psp_a"}, 400, 0.12, "INSUFFICIENT_FUNDS", 300.0)
    gone = ({"bank": "BIG", "route": "psp_a"}, 40, 0.12, "INSUFFICIENT_FUNDS", 300.0)
    w, snaps = run([[declining, HEALTHY[1]]] * 4 + [[gone, HEALTHY[1]]] * 3)
    assert all(s.segment(route="psp_a").z >= DEFAULTS.significance_z for s in snaps[:4])  # out of line throughout
    assert w.baselines.get("route=psp_a").volume == pytest.approx(400.0, rel=0.02)
    assert snaps[-1].segment(route="psp_a").volume_ratio == pytest.approx(0.1, abs=0.01)
    # Only the volume was learned: its failures are still judged against its peers, not its own 12%.
    assert snaps[-1].segment(route="psp_a").baseline_failure_rate is None
    assert snaps[-1].segment(route="psp_a").expected_failure_rate == pytest.approx(0.04, abs=0.005)
