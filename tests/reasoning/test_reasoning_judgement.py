"""Judgement that generalises (issue 14): shapes the rules were not tuned on, through the real window.

No false "healthy", card testing, segment volume drops and a silent feed, mitigating rather
than only alerting, persistence on marginal evidence, early attribution at low counts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from judgement_helpers import (
    MERCHANTS,
    START,
    WALLET_ROUTE,
    Run,
    card_testing,
    chain,
    drop,
    fail,
    fail_between,
    minute,
    pinned,
    play,
    scale,
)
from reasoning_helpers import Cell, base_cells, context, healthy_history, window

from payops.graph.reasoners.base import ActionView, Thresholds
from payops.graph.reasoners.rules import HOLD_CONFIDENCE, RuleReasoner
from payops.graph.reasoners.selection import WATCH_BELOW
from payops.models import Category

RULES = RuleReasoner()
ENUMERATION_MIX = {"USER_DECLINED": 0.3, "DO_NOT_HONOR": 0.3, "SUSPECTED_FRAUD": 0.2, "INCORRECT_PIN": 0.2}
TIMEOUTS = {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4}


# -- the window's new columns ------------------------------------------------------

def test_the_window_counts_low_amount_attempts_and_their_failures_per_segment() -> None:
    run = play(6, card_testing("shop 3", 5, per_minute=300))
    seg = run.history[-1].segment(merchant_id="shop 3")
    other = run.history[-1].segment(merchant_id="shop 4")
    assert seg is not None and other is not None
    assert seg.low_amount_attempts >= 300  # every tester charge is under the ZAR bar
    assert 0.75 * 300 <= seg.low_amount_failures <= seg.low_amount_attempts
    assert other.low_amount_attempts < 10  # ordinary baskets are rarely that small


# -- 1. no false "healthy" ---------------------------------------------------------

def test_a_significant_rise_no_rule_explains_is_an_unexplained_anomaly_with_an_alert_not_healthy() -> None:
    run = play(7, fail(lambda e: True, 0.08, ENUMERATION_MIX, 5))
    for decision in run.decisions[5:]:
        d, p = decision.diagnosis, decision.proposal
        assert d.category is not Category.HEALTHY, d.summary
        assert p.tool == "alert_ops", (p.tool, p.args)
    d = run.decisions[5].diagnosis
    assert d.confidence < WATCH_BELOW  # "we do not know what": low by design, yet paged
    assert any("where the excess concentrates" in line for line in d.evidence)


def test_healthy_traffic_stays_healthy_with_the_anomaly_check_in_place() -> None:
    run = play(8)
    assert all(d.proposal.tool == "no_action" for d in run.decisions), [d.diagnosis.summary for d in run.decisions]


# -- 2. card testing ---------------------------------------------------------------

def test_a_card_testing_burst_at_one_merchant_is_security_and_that_merchant_is_suppressed() -> None:
    run = play(7, card_testing("shop 3", 5))
    assert all(d.diagnosis.category is Category.HEALTHY for d in run.decisions[:5])
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert (d.category, d.target) == (Category.SECURITY, {"merchant_id": "shop 3"}), d.summary
    assert (p.tool, p.target) == ("suppress_path", {"merchant_id": "shop 3"})
    assert any("banks share the excess" in line for line in d.evidence)


def test_card_testing_without_amounts_is_still_caught_by_its_burst_of_volume() -> None:
    run = play(7, card_testing("shop 6", 5, per_minute=400, amounts=False))
    d = run.decisions[5].diagnosis
    assert (d.category, d.target) == (Category.SECURITY, {"merchant_id": "shop 6"}), d.summary


def test_declines_concentrated_on_one_bank_are_not_card_testing() -> None:
    run = play(7, fail(lambda e: e.bank == "Sable Trust", 0.3, {"INCORRECT_PIN": 0.5, "EXPIRED_CARD": 0.5}, 5))
    assert all(d.diagnosis.summary.find("Card testing") < 0 for d in run.decisions)


# -- 3. volume and no data ---------------------------------------------------------

def test_a_route_losing_most_of_its_traffic_while_its_peers_keep_theirs_is_a_network_incident() -> None:
    run = play(7, drop(lambda e: e.route == "acq one", 0.9, 5))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert (d.category, d.target) == (Category.NETWORK, {"route": "acq one"}), d.summary
    assert (p.tool, p.target) == ("reroute_traffic", {"route": "acq one"})
    assert "acq one" not in p.args["to_routes"]


def test_a_route_whose_traffic_stops_altogether_stays_an_incident_while_it_stays_away() -> None:
    run = play(9, drop(lambda e: e.route == "acq-two", 1.0, 5))
    for decision in run.decisions[5:]:
        assert (decision.diagnosis.category, decision.diagnosis.target) == (
            Category.NETWORK, {"route": "acq-two"}), decision.diagnosis.summary


def test_a_shop_vanishing_with_most_of_its_acquirers_other_traffic_is_the_acquirer() -> None:
    # Session 12, met on a development draw at 1,141 payments/min: an acquirer black-holing requests from
    # 15 s into a window; its busiest kiosk lost 73 % of its attempts, the acquirer 60 % (under the bar
    # for "most of its traffic"), and the kiosk was named. The acquirer's other customers went missing too.
    run = play(7, chain(pinned("shop 3", "acq one"),
                        drop(lambda e: e.route == "acq one" and e.merchant_id != "shop 3", 0.6, 5),
                        drop(lambda e: e.merchant_id == "shop 3" and e.route == "acq one", 1.0, 5)))
    d = run.decisions[5].diagnosis
    assert (d.category, d.target) == (Category.NETWORK, {"route": "acq one"}), d.summary


def test_a_shops_own_outage_is_the_shops_though_all_of_it_went_through_one_acquirer() -> None:
    run = play(7, chain(pinned("shop 3", "acq one"), drop(lambda e: e.merchant_id == "shop 3", 1.0, 5)))
    d = run.decisions[5].diagnosis
    assert (d.category, d.target) == (Category.NETWORK, {"merchant_id": "shop 3"}), d.summary


def test_a_platform_wide_dip_and_a_surge_are_not_incidents() -> None:
    for tweak in (scale(0.3, 5), scale(2.0, 5)):
        run = play(8, tweak)
        assert all(d.diagnosis.summary.find("vanished") < 0 for d in run.decisions)
        assert all(d.proposal.tool in ("no_action",) for d in run.decisions), [d.diagnosis.summary
                                                                               for d in run.decisions]


def test_a_silent_feed_is_no_data_watched_first_then_alerted_after_the_setting_and_never_healthy() -> None:
    run = play(2)
    for i in range(2, 5):
        run.step([], i)
    first, second, third = (d for d in run.decisions[2:])
    for d in (first, second, third):
        assert d.diagnosis.category is Category.NETWORK, d.diagnosis.summary
    assert first.proposal.tool == "no_action" and "No data" in first.diagnosis.summary  # 60 s < 120 s: watched
    assert third.proposal.tool == "alert_ops"
    assert "silent" in third.diagnosis.summary


def test_a_feed_back_a_second_before_the_tick_after_two_silent_minutes_is_no_data_not_healthy() -> None:
    """A collector dying a second into a minute and back a second before the tick two minutes later: one payment
    in a window where a thousand are usual read "healthy" (0.60) and the silence was never paged. A trickle
    this thin is the feed, not the customers (the deepest lull keeps a quarter). The silence is counted from
    the latest the last event can have come (the dying minute's first third: 140 s at least, never more
    than there was), and the trickle is said as the feed coming back, not as "no events"."""
    run = play(3)
    dying = [e for e in minute(np.random.default_rng(2), 3) if e.ts < START + 60.0 * 3 + 1.0]
    assert run.step(dying, 3).diagnosis.category is Category.NETWORK  # a second of a minute: as good as silent
    run.step([], 4)
    back = [replace(e, ts=START + 60.0 * 6 - 1.0) for e in minute(np.random.default_rng(3), 5, volume=1)]
    d = run.step(back, 5)
    assert d.diagnosis.category is Category.NETWORK, d.diagnosis.summary
    assert d.proposal.tool == "alert_ops" and "silent for 140 s" in d.diagnosis.summary, d.diagnosis.summary
    assert "coming back" in d.diagnosis.summary and "coming back" in d.diagnosis.evidence[0], d.diagnosis.evidence


def test_a_feed_silent_for_a_minute_and_59_seconds_is_watched_not_paged() -> None:
    """The guard: silent from a minute's last second to a second before the tick two minutes on is 119 s, under
    the setting (120 s): watched, not paged, whatever the windows' boundaries."""
    run = play(4)
    run.step([], 4)
    back = [replace(e, ts=START + 60.0 * 6 - 1.0) for e in minute(np.random.default_rng(3), 5, volume=1)]
    d = run.step(back, 5)
    assert d.diagnosis.category is Category.NETWORK and d.proposal.tool == "no_action", d.diagnosis.summary


# -- 4. mitigate, don't just alert --------------------------------------------------

def test_a_failing_route_whose_second_method_has_no_other_route_reroutes_the_method_that_can_move() -> None:
    run = play(6, fail(lambda e: e.route == WALLET_ROUTE, 0.7, TIMEOUTS, 5))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert d.target == {"route": WALLET_ROUTE}
    assert (p.tool, p.target) == ("reroute_traffic", {"method": "card", "route": WALLET_ROUTE})
    # With the card traffic moved, the rest (the wallet, which has nowhere to go) is alerted.
    run.in_force = (ActionView("reroute_traffic", {"method": "card", "route": WALLET_ROUTE}, dict(p.args),
                               START + 360.0,
                               START + 9999.0, "d1"),)
    play(1, fail(lambda e: e.route == WALLET_ROUTE, 0.7, TIMEOUTS, 0), seed=11, run=_continue(run))
    last = run.decisions[-1]
    assert (last.proposal.tool, last.proposal.target) == ("alert_ops", {"route": WALLET_ROUTE}), last.proposal


def _continue(run: Run) -> Run:
    """Keep the run's clock: the next minute is numbered after the last one."""
    offset = len(run.decisions)

    class Shifted(Run):
        pass

    shifted = run
    original = shifted.step

    def step(events, i):  # type: ignore[no-untyped-def]
        moved = [e.__class__(**{**{f: getattr(e, f) for f in e.__slots__}, "ts": e.ts + 60.0 * offset}) for e in events]
        return original(moved, i + offset)

    shifted.step = step  # type: ignore[method-assign]
    return shifted


def test_an_alert_only_issuer_incident_that_outlives_the_review_is_paged_again_as_critical_not_left_alerted() -> None:
    review = Thresholds().alert_review_ticks
    run = play(5 + review, fail(lambda e: e.bank == "Sable Trust", 0.6, {"ISSUER_DOWN": 1.0}, 5))
    first, later = run.decisions[5].proposal, run.decisions[5 + review - 1].proposal
    assert (first.tool, first.args["severity"]) == ("alert_ops", "warning")
    assert (later.tool, later.target, later.args["severity"]) == ("alert_ops", {"bank": "Sable Trust"}, "critical")
    assert later.args["summary"].startswith(f"Still present after {review} windows")
    # Never a suppression of a bank that still lets 40% through: that costs more payments than it saves.
    assert all(d.proposal.tool != "suppress_path" for d in run.decisions)


# -- 5. persistence ----------------------------------------------------------------

def test_a_blip_over_within_its_window_is_held_for_a_human_and_the_next_window_is_healthy() -> None:
    run = play(7, fail(lambda e: e.route == "acq-two", 0.12, {"GATEWAY_TIMEOUT": 1.0}, 5, 6, first_seconds=30.0))
    blip, after = run.decisions[5], run.decisions[6]
    if blip.proposal.tool in ("reroute_traffic", "suppress_path"):
        assert blip.diagnosis.confidence <= HOLD_CONFIDENCE < 0.8  # never an autonomous move on one marginal window
    assert after.diagnosis.category is Category.HEALTHY


def test_strong_evidence_still_acts_at_once() -> None:
    run = play(6, fail(lambda e: e.route == "acq-two", 0.6, TIMEOUTS, 5))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert p.tool == "reroute_traffic" and d.confidence >= 0.8


def test_marginal_evidence_confirmed_in_the_second_window_is_no_longer_held() -> None:
    # 8% of the route's attempts time out: z 7.8 and 23 excess in the first window (marginal by the settings),
    # and again in the second. (At 4% the second window's figures stood out only against a reference that
    # weighed the first minute of the run 0.9^k: since session 8 a young baseline weighs its windows alike.)
    run = play(7, fail(lambda e: e.route == "acq-two", 0.08, {"GATEWAY_TIMEOUT": 1.0}, 5))
    first, second = run.decisions[5], run.decisions[6]
    held = lambda d: any(n.startswith("hold:marginal") for n in d.notes)  # noqa: E731
    assert first.proposal.tool == "reroute_traffic" and held(first) and first.diagnosis.confidence <= HOLD_CONFIDENCE
    assert second.proposal.tool == "reroute_traffic" and not held(second)


# -- 6. early attribution ----------------------------------------------------------

def test_at_low_counts_the_route_explains_its_issuer_pair_unless_the_pair_is_clearly_better() -> None:
    cells = base_cells(volume=300)
    history = healthy_history(cells)
    ramp = []
    for c in cells:
        if c.dims["route"] == "psp_a":
            extra = 11 if c.dims["bank"] == "FNB" else 2  # the ramp shows first at one bank, thinly at the rest
            c = Cell(c.dims, c.attempts, {**c.errors, "GATEWAY_TIMEOUT": extra}, c.normal_rate)
        ramp.append(c)
    d = RULES.decide(window(ramp), context(history)).diagnosis
    assert d.target == {"route": "psp_a"}, (d.target, d.summary)
    # Only the pair fails; the route's rest is clean: the pair keeps the blame.
    only = [Cell(c.dims, c.attempts, {**c.errors, "GATEWAY_TIMEOUT": 14}, c.normal_rate)
            if (c.dims["route"], c.dims["bank"]) == ("psp_a", "FNB") else c for c in cells]
    d = RULES.decide(window(only), context(history)).diagnosis
    assert d.target == {"bank": "FNB", "route": "psp_a"}, (d.target, d.summary)


def test_merchants_in_the_helpers_are_data() -> None:
    events = minute(__import__("numpy").random.default_rng(1), 0, 200)
    assert {e.merchant_id for e in events} <= set(MERCHANTS)
    assert chain()(events, 0, None) == events  # type: ignore[arg-type]


def test_a_device_fault_is_not_held_although_a_terminal_never_reaches_the_strong_bars() -> None:
    from payops.graph.reasoners.base import ReasoningContext
    from payops.signals.simulator import Simulator, build_scenario, default_network
    from payops.signals.sources import SimulatorSource
    from payops.signals.window import EventWindow

    net = default_network()
    sim = Simulator(build_scenario("palm_scanner_fault", net), net, seed=2)
    source, win, history, previous = SimulatorSource(sim), EventWindow(60.0, significance_z=4.0), [], None
    for i in range(1, 10):
        win.add(source.read_until(sim.start_ts + 60.0 * i))
        snap = win.snapshot(sim.start_ts + 60.0 * i)
        decision = RULES.decide(snap, ReasoningContext(previous=previous, history=tuple(history)))
        history.append(snap)
        previous = decision.diagnosis
        if decision.diagnosis.category is not Category.HEALTHY:
            break
    assert decision.proposal.tool == "suppress_path" and "terminal_id" in decision.proposal.target
    assert not any(n.startswith("hold:") for n in decision.notes)
    assert decision.diagnosis.confidence > HOLD_CONFIDENCE


# -- references, schemes, misrouting (issue 14, held-out misses) -------------------------

def _misroute_wallet(from_minute: int):  # type: ignore[no-untyped-def]
    def tweak(events, i, rng):  # type: ignore[no-untyped-def]
        if i < from_minute:
            return events
        return [e.__class__(**{**{f: getattr(e, f) for f in e.__slots__}, "route": "acq one", "status": "failure",
                               "error_code": "ROUTE_NOT_SUPPORTED"}) if e.method == "wallet" else e for e in events]
    return tweak


def test_a_method_misrouted_to_a_route_that_rejects_it_is_sent_back_where_it_worked_a_minute_ago() -> None:
    run = play(7, _misroute_wallet(5))
    d, p = run.decisions[6].diagnosis, run.decisions[6].proposal
    assert (d.category, d.target) == (Category.CONFIG, {"method": "wallet", "route": "acq one"}), d.summary
    assert p.tool == "reroute_traffic" and p.args["to_routes"] == {WALLET_ROUTE: 1.0}, p


def _wallet_cells(on_acq: int, left_on_w: int, declined_on_w: int) -> list[Cell]:
    """The wallet's own route w carries nothing else; cards go through acq and psp."""
    cells = [Cell({"bank": b, "method": "card", "route": r, "issuer": "VISA"}, 60, {"INSUFFICIENT_FUNDS": 2})
             for b in ("A", "B") for r in ("acq", "psp")]
    cells += [Cell({"bank": b, "method": "wallet", "route": "w", "issuer": "WALLET"}, left_on_w // 2,
                   {"INSUFFICIENT_FUNDS": declined_on_w // 2} if declined_on_w else {}) for b in ("A", "B")]
    if on_acq:
        cells += [Cell({"bank": b, "method": "wallet", "route": "acq", "issuer": "WALLET"}, on_acq // 2,
                       {"ROUTE_NOT_SUPPORTED": on_acq // 2}) for b in ("A", "B")]
    return cells


def test_a_misrouted_method_goes_back_to_a_route_whose_few_payments_left_are_customers_declines() -> None:
    # Session 13, met on development draw J3 (PayShap misrouted at 577 and 6,256 payments/min): the method's own
    # route kept a handful of payments completing, 4 of 11 declined for funds, and was judged failing: no route
    # to send the method back to, and the misroute was only alerted. A customer's decline is the bank's answer.
    history = healthy_history(_wallet_cells(0, 40, 2), 8)
    d = RULES.decide(window(_wallet_cells(30, 12, 4)), context(history))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.CONFIG, {"method": "wallet", "route": "acq"}), \
        d.diagnosis.summary
    assert d.proposal.tool == "reroute_traffic" and d.proposal.args["to_routes"] == {"w": 1.0}, d.proposal


def test_a_misrouted_method_is_not_sent_back_to_a_route_failing_the_payments_left_on_it() -> None:
    # The guard: the same handful failing with time-outs: the route itself is in trouble.
    history = healthy_history(_wallet_cells(0, 40, 2), 8)
    now = [c if c.dims.get("route") != "w" else Cell(c.dims, c.attempts, {"GATEWAY_TIMEOUT": 2}) for c in
           _wallet_cells(30, 12, 4)]
    d = RULES.decide(window(now), context(history))
    assert d.proposal.tool != "reroute_traffic" or "w" not in d.proposal.args.get("to_routes", {}), d.proposal


def _card_declines_more(extra: float):  # type: ignore[no-untyped-def]
    return fail(lambda e: e.method == "card" and e.status == "success", extra,
                {"INSUFFICIENT_FUNDS": 0.6, "DO_NOT_HONOR": 0.4}, 0)


def test_a_segment_that_always_fails_more_than_its_peers_is_judged_on_its_own_record_and_stays_healthy() -> None:
    run = play(9, _card_declines_more(0.08))
    assert all(d.diagnosis.category is Category.HEALTHY for d in run.decisions[3:]), [d.diagnosis.summary
                                                                                      for d in run.decisions]


def test_a_card_scheme_failing_across_banks_and_routes_is_a_network_fault_of_the_scheme_not_of_card() -> None:
    run = play(7, chain(_card_declines_more(0.08), fail(lambda e: e.issuer == "VISA", 0.5, TIMEOUTS, 5)))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert (d.category, d.target) == (Category.NETWORK, {"issuer": "VISA"}), d.summary
    assert p.tool in ("alert_ops", "suppress_path") and p.target == {"issuer": "VISA"}


def _regions(events, i, rng):  # type: ignore[no-untyped-def]
    """Every payment gets its merchant's region; 'north' holds shops 0-3."""
    return [e.__class__(**{**{f: getattr(e, f) for f in e.__slots__},
                           "region": "north" if e.merchant_id in ("shop 0", "shop 1", "shop 2", "shop 3") else "south"})
            for e in events]


def test_card_testing_is_blamed_on_the_merchant_inside_the_region_that_carries_it() -> None:
    run = play(7, chain(card_testing("shop 3", 5), _regions))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert (d.category, d.target) == (Category.SECURITY, {"merchant_id": "shop 3"}), d.summary
    assert (p.tool, p.target) == ("suppress_path", {"merchant_id": "shop 3"})


def test_a_route_failing_for_every_scheme_is_blamed_on_the_route_not_on_its_busiest_scheme() -> None:
    for seed in (3, 5, 9):
        run = play(7,
                   chain(_card_declines_more(0.08), fail(lambda e: e.route == "acq one", 0.15, TIMEOUTS, 5)), seed=seed)
        d = run.decisions[5].diagnosis
        assert (d.category, d.target) == (Category.NETWORK, {"route": "acq one"}), (seed, d.summary)


def test_the_window_counts_its_tail_apart() -> None:
    run = play(6, fail_between("acq-two", 345.0, 360.0))
    snap = run.history[5]
    seg = snap.segment(route="acq-two")
    assert seg is not None and 0 < seg.tail_attempts < seg.attempts and seg.tail_failures >= 0.9 * (seg.failures - 5)


def test_a_burst_seconds_old_at_the_window_end_is_held_and_once_over_moves_no_traffic() -> None:
    run = play(8, fail_between("acq-two", 345.0, 375.0))  # 15 s at the end of minute 5, 15 s at the start of minute 6
    young, over = run.decisions[5], run.decisions[6]
    assert young.proposal.tool != "reroute_traffic" or young.diagnosis.confidence <= HOLD_CONFIDENCE, young.notes
    assert over.proposal.tool not in ("reroute_traffic", "suppress_path"), over.proposal
    assert any(n.startswith("burst over") for n in over.notes)


def test_an_outage_under_way_through_the_window_still_acts_at_once() -> None:
    run = play(6, fail_between("acq-two", 305.0, 1e9, rate=0.6))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert p.tool == "reroute_traffic" and d.confidence >= 0.8, d.evidence


def _one_scheme_on(route: str):  # type: ignore[no-untyped-def]
    """Every card payment on `route` is VISA but for one a minute."""
    def tweak(events, i, rng):  # type: ignore[no-untyped-def]
        out, stray = [], True
        for e in events:
            if e.route == route and e.method == "card":
                e = e.__class__(**{**{f: getattr(e, f) for f in e.__slots__},
                                   "issuer": "MASTERCARD" if stray else "VISA"})
                stray = False
            out.append(e)
        return out
    return tweak


def test_a_route_that_carries_one_scheme_but_for_a_stray_payment_is_blamed_as_the_route() -> None:
    run = play(7, chain(_one_scheme_on("acq-two"), fail(lambda e: e.route == "acq-two", 0.5, TIMEOUTS, 5)))
    d = run.decisions[5].diagnosis
    assert (d.category, d.target) == (Category.NETWORK, {"route": "acq-two"}), d.summary


def test_a_misroute_that_lasts_is_never_learned_as_the_pairs_own_normal() -> None:
    from payops.graph.reasoners.base import ReasoningContext
    from payops.graph.reasoners.reference import prepared

    run = play(10, _misroute_wallet(3))
    assert all(d.diagnosis.category is Category.CONFIG for d in run.decisions[3:]), [d.diagnosis.summary
                                                                                     for d in run.decisions[3:]]
    snap = prepared(run.history[-1], ReasoningContext(history=tuple(run.history[:-1])))
    pair = snap.segment(method="wallet", route="acq one")
    assert pair is not None and pair.expected_failure_rate < 0.2, pair.expected_failure_rate
