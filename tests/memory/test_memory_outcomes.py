"""The outcome judge as a pure function over before/after figures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payops.memory.outcomes import (
    EVAL_WINDOWS,
    Expected,
    Figures,
    InForce,
    OutcomeEvidence,
    Scopes,
    Watch,
    judge,
    step,
    two_proportion_z,
)


def F(attempts: int, failures: int, p95: float = 400.0, apm: float = 1.05, windows: int = 1) -> Figures:
    return Figures(attempts, failures, p95, apm, windows)


# A route carrying 200 of 600 attempts per window fails at 55%; everything else at 4%.
BEFORE = Scopes(target=F(200, 110), platform=F(600, 126), destinations=F(150, 6))
EXPECTED = Expected(target=0.04, platform=0.04, destinations=0.04)


def evidence(after: Scopes, before: Scopes = BEFORE, **kw) -> OutcomeEvidence:
    return OutcomeEvidence(tool=kw.pop("tool", "reroute_traffic"), before=before, after=after, expected=EXPECTED, **kw)


def test_reroute_that_empties_the_target_is_judged_where_the_traffic_went():
    # The target carries nothing after; its traffic now succeeds on the destination.
    after = Scopes(target=F(0, 0, windows=3), platform=F(1800, 75, windows=3), destinations=F(1050, 42, windows=3))
    v = judge(evidence(after))
    assert v.verdict == "helped"
    assert "platform failure rate fell 21.0% -> 4.2%" in v.reasons[0]


def test_moved_traffic_failing_on_the_destination_is_harm():
    after = Scopes(target=F(0, 0), platform=F(600, 130), destinations=F(350, 110))
    v = judge(evidence(after))
    assert v.verdict == "harmed"
    assert any("destination failure rate rose" in r for r in v.reasons)


def test_nothing_changed_with_enough_traffic_is_no_effect():
    after = Scopes(target=F(600, 330, windows=3), platform=F(1800, 378, windows=3), destinations=F(450, 18, windows=3))
    assert judge(evidence(after)).verdict == "no_effect"


def test_too_little_traffic_after_is_inconclusive():
    after = Scopes(target=F(0, 0), platform=F(20, 1), destinations=F(10, 0))
    v = judge(evidence(after))
    assert v.verdict == "inconclusive" and "too little traffic" in v.reasons[0]


def test_an_excess_too_small_to_see_is_inconclusive_not_no_effect():
    # A terminal: 10 attempts of 600, 8 failing. A full fix would move the platform by ~1 point.
    before = Scopes(target=F(10, 8), platform=F(600, 32), destinations=None)
    after = Scopes(target=F(0, 0, windows=3), platform=F(1800, 90, windows=3), destinations=None)
    v = judge(OutcomeEvidence("suppress_path", before, after, Expected(0.04, 0.045)))
    assert v.verdict == "inconclusive" and "too small" in v.reasons[0]


def test_a_recovery_already_under_way_is_not_credited():
    after = Scopes(target=F(0, 0, windows=3), platform=F(1800, 75, windows=3), destinations=F(1050, 42, windows=3))
    falling = F(200, 180)  # 90% failing the window before, 55% at the decision: it was already easing
    v = judge(evidence(after, prior_target=falling))
    assert v.verdict == "inconclusive" and "already recovering" in v.reasons[0]
    rising = F(200, 20)
    assert judge(evidence(after, prior_target=rising)).verdict == "helped"


def test_a_suppression_without_fallback_may_give_up_the_target_but_not_more():
    before = Scopes(target=F(160, 104), platform=F(600, 122), destinations=None)  # the bank fails 65%
    gave_up = Scopes(target=F(0, 0, windows=3), platform=F(1320, 55, windows=3), destinations=None)
    ok = judge(OutcomeEvidence("suppress_path", before, gave_up, EXPECTED, gives_up_target=True))
    assert ok.verdict == "helped"
    # The same suppression of a bank that mostly succeeded gives up more than it saves.
    healthy_bank = Scopes(target=F(160, 30), platform=F(600, 48), destinations=None)
    after = Scopes(target=F(0, 0, windows=3), platform=F(1320, 53, windows=3), destinations=None)
    bad = judge(OutcomeEvidence("suppress_path", healthy_bank, after, EXPECTED, gives_up_target=True))
    assert bad.verdict == "harmed" and "gave up" in bad.reasons[0]


def test_lost_successes_are_harm_when_nothing_was_meant_to_be_given_up():
    after = Scopes(target=F(0, 0), platform=F(400, 16), destinations=F(150, 6))  # 200 payments vanished
    v = judge(evidence(after, tool="suppress_path"))
    assert v.verdict == "harmed" and any("successes per window fell" in r for r in v.reasons)


def test_retry_amplification_and_latency_are_harm():
    before = Scopes(target=F(160, 100, p95=9000, apm=1.6), platform=F(640, 124, p95=5000, apm=1.15))
    after = Scopes(target=F(400, 260, p95=9000, apm=2.6), platform=F(880, 284, p95=9000, apm=1.6))
    v = judge(OutcomeEvidence("adjust_retry_policy", before, after, EXPECTED))
    assert v.verdict == "harmed"
    assert any("platform failure rate rose" in r for r in v.reasons)
    assert any("attempts per payment rose" in r for r in v.reasons)


def test_latency_incident_fixed_counts_as_helped():
    before = Scopes(target=F(200, 14, p95=2600), platform=F(600, 30, p95=2200), destinations=F(150, 6, p95=400))
    after = Scopes(target=F(0, 0, windows=3), platform=F(1800, 80, p95=420, windows=3),
                   destinations=F(1050, 45, p95=420, windows=3))
    assert judge(evidence(after, before=before)).verdict == "helped"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(200, 3000), rate=st.floats(0.01, 0.5))
def test_an_unchanged_world_is_never_harmed_nor_helped(n, rate):
    """Identical before and after (per window) can only be no_effect or inconclusive."""
    f = int(n * rate)
    before = Scopes(target=F(n // 3, int(n // 3 * rate)), platform=F(n, f), destinations=F(n // 4, int(n // 4 * rate)))
    after = Scopes(target=F(3 * (n // 3), 3 * int(n // 3 * rate), windows=3), platform=F(3 * n, 3 * f, windows=3),
                   destinations=F(3 * (n // 4), 3 * int(n // 4 * rate), windows=3))
    verdict = judge(OutcomeEvidence("reroute_traffic", before, after, Expected(rate, rate, rate))).verdict
    assert verdict in ("no_effect", "inconclusive")


def test_two_proportion_z_sign_and_size():
    assert two_proportion_z(10, 100, 30, 100) > 3
    assert two_proportion_z(30, 100, 10, 100) < -3
    assert two_proportion_z(0, 0, 5, 10) == 0.0


def _watch(**kw) -> Watch:
    base = dict(decision_id="d-1", action_id="d-1", tool="reroute_traffic", target={"route": "psp_a"},
                args={"to_routes": {"psp_b": 1.0}}, decided_at=60.0, applied_at=60.0, expires_at=1860.0,
                signature={}, before=BEFORE.to_json(),
                expected={"target": 0.04, "platform": 0.04, "destinations": 0.04})
    base.update(kw)
    return Watch(**base)


GOOD_WINDOW = Scopes(target=F(0, 0), platform=F(600, 25), destinations=F(350, 14))


def test_step_pools_windows_and_concludes_at_the_horizon():
    w = _watch()
    mine = [InForce("d-1", 60.0)]
    for i in range(EVAL_WINDOWS - 1):
        s = step(w, 60.0 + 60 * i, 120.0 + 60 * i, GOOD_WINDOW, mine)
        assert s.verdict is None
        w = s.watch
    s = step(w, 60.0 + 60 * (EVAL_WINDOWS - 1), 120.0 + 60 * (EVAL_WINDOWS - 1), GOOD_WINDOW, mine)
    assert s.verdict is not None and s.verdict.verdict == "helped"
    assert s.watch.windows == EVAL_WINDOWS and Scopes.from_json(s.watch.after).platform.attempts == 600 * EVAL_WINDOWS


def test_step_ignores_a_window_that_overlaps_the_change():
    s = step(_watch(applied_at=90.0), 60.0, 120.0, GOOD_WINDOW, [InForce("d-1", 90.0)])
    assert s.verdict is None and s.watch.windows == 0


def test_step_concludes_harm_after_one_window():
    harmful = Scopes(target=F(0, 0), platform=F(600, 140), destinations=F(350, 120))
    s = step(_watch(), 60.0, 120.0, harmful, [InForce("d-1", 60.0)])
    assert s.verdict is not None and s.verdict.verdict == "harmed" and s.still_in_force


@pytest.mark.parametrize("in_force, why", [
    ([], "no longer in force"),
    ([InForce("d-1", 60.0), InForce("d-2", 120.0)], "another action changed traffic (d-2)"),
])
def test_step_closes_when_the_action_is_not_alone(in_force, why):
    w = step(_watch(), 60.0, 120.0, GOOD_WINDOW, [InForce("d-1", 60.0)]).watch  # one clean window
    s = step(w, 120.0, 180.0, GOOD_WINDOW, in_force)
    assert s.verdict is not None and why in s.verdict.reasons[-1]
    assert Scopes.from_json(s.watch.after).platform.windows == 1  # the confounded window was not added
    empty = step(_watch(), 120.0, 180.0, GOOD_WINDOW, in_force)
    assert empty.verdict is not None and empty.verdict.verdict == "inconclusive"


def test_an_unconfirmed_action_is_not_measured_yet():
    s = step(_watch(), 60.0, 120.0, GOOD_WINDOW, [InForce("d-1", 60.0, confirmed=False)])
    assert s.verdict is None and s.watch.windows == 0


def test_figures_round_trip_and_pooling():
    a, b = F(100, 10, p95=300, apm=1.0), F(300, 60, p95=500, apm=1.2)
    pooled = Figures.pooled([a, b])
    assert (pooled.attempts, pooled.failures, pooled.windows) == (400, 70, 2)
    assert pooled.latency_p95_ms == pytest.approx(450.0)
    assert Figures.from_json(pooled.to_json()) == Figures(400, 70, 450.0, 1.15, 2)
    assert Figures.union([a, b]).windows == 1
    s = Scopes(a, b, None)
    assert Scopes.from_json(s.to_json()) == s
