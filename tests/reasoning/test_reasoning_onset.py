"""When a fault began, what its slowness is made of, and what explains all of it (issue 14, session 5).

Shapes met on fresh seeds of the independent generator and rebuilt here in the hand-written world
(judgement_helpers) or as crafted windows (reasoning_helpers), never copied from the generator:
- a 30 s burst in the middle of a window fails in both the window's last 20 s and the 20 s before
  them, yet began within the window: no autonomous traffic move on it;
- a bank or scheme whose attempts time out makes the route carrying most of them "slow": the
  failures are the finding, not a latency incident on the route;
- a merchant failing on every route it uses is the explanation, not the route carrying most of it.
"""

from __future__ import annotations

from judgement_helpers import fail_between, play
from reasoning_helpers import Cell, base_cells, context, fail, healthy_history, window

from payops.graph.reasoners.latency import latency_candidates, latency_finding, slow_not_failing
from payops.graph.reasoners.rules import HOLD_CONFIDENCE, RuleReasoner
from payops.models import Category

RULES = RuleReasoner()
MOVES = ("reroute_traffic", "suppress_path")


def _fail_between(route: str, t_from: float, t_to: float, rate: float = 0.9):  # type: ignore[no-untyped-def]
    return fail_between(route, t_from, t_to, rate)


# -- onset within the window ----------------------------------------------------------

def test_the_window_counts_its_lead_apart() -> None:
    run = play(6, _fail_between("acq-two", 300.0, 315.0))
    seg = run.history[5].segment(route="acq-two")
    assert seg is not None and 0 < seg.lead_attempts < seg.attempts
    assert seg.lead_failures >= 0.9 * (seg.failures - 8)  # the burst sits in the first third, plus normal declines


def test_a_burst_in_the_middle_of_a_window_began_within_it_and_moves_no_traffic_on_its_own() -> None:
    # 30 s of time-outs from second 20 to 50: the last 20 s and the 20 s before them both fail,
    # so a head/tail split alone reads it as an outage that lasted the window.
    run = play(8, _fail_between("acq-two", 320.0, 350.0))
    burst, after = run.decisions[5], run.decisions[6]
    assert burst.diagnosis.category is Category.NETWORK
    assert burst.proposal.tool not in MOVES or burst.diagnosis.confidence <= HOLD_CONFIDENCE < 0.8, burst.notes
    assert any("began failing within the window" in n for n in burst.notes), burst.notes
    assert after.proposal.tool not in MOVES or after.diagnosis.confidence <= HOLD_CONFIDENCE


def test_an_outage_that_began_in_the_windows_first_seconds_still_acts_at_once() -> None:
    run = play(6, _fail_between("acq-two", 306.0, 1e9, rate=0.6))
    d, p = run.decisions[5].diagnosis, run.decisions[5].proposal
    assert p.tool == "reroute_traffic" and d.confidence >= 0.8, d.evidence


def test_an_outage_held_for_its_youth_acts_in_the_next_window_once_it_has_lasted() -> None:
    run = play(7, _fail_between("acq-two", 330.0, 1e9, rate=0.6))
    young, lasting = run.decisions[5], run.decisions[6]
    assert young.proposal.tool == "reroute_traffic" and young.diagnosis.confidence <= HOLD_CONFIDENCE
    assert lasting.proposal.tool == "reroute_traffic" and lasting.diagnosis.confidence >= 0.8, lasting.notes


# -- slowness made of failures -------------------------------------------------------------

def _bank_timeouts_mostly_on_one_route() -> list[Cell]:
    """BIG BANK times out on both card routes; most of its traffic goes through psp_a."""
    slow = dict(p95_ms=25_000.0, p50_ms=1_500.0)
    fast = dict(p95_ms=500.0, p50_ms=280.0)
    return [
        Cell({"bank": "BIG BANK", "route": "psp_a", "method": "card", "issuer": "VISA"}, 300,
             {"GATEWAY_TIMEOUT": 270}, **slow),
        Cell({"bank": "Other Bank", "route": "psp_a", "method": "card", "issuer": "VISA"}, 100,
             {"INSUFFICIENT_FUNDS": 4}, **fast),
        Cell({"bank": "BIG BANK", "route": "psp_b", "method": "card", "issuer": "VISA"}, 30,
             {"GATEWAY_TIMEOUT": 27}, **slow),
        Cell({"bank": "Other Bank", "route": "psp_b", "method": "card", "issuer": "VISA"}, 300,
             {"INSUFFICIENT_FUNDS": 12}, **fast),
    ]


def _normal(cells: list[Cell]) -> list[Cell]:
    return [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(0.04 * c.attempts)}, p95_ms=500.0, p50_ms=280.0)
            for c in cells]


def test_a_route_slow_because_most_of_its_attempts_time_out_is_not_a_latency_incident() -> None:
    cells = _bank_timeouts_mostly_on_one_route()
    snap = window(cells)
    ctx = context(healthy_history(_normal(cells)))
    slow = latency_candidates(snap, ctx)
    assert [s.key for s, _ in slow] == ["route=psp_a"]  # its p95 and median are far above the reference...
    assert slow_not_failing(slow) == []  # ...but 68 % of its attempts failed: the median is a time-out
    d = RULES.decide(snap, ctx)
    assert d.diagnosis.summary != "Latency degradation on route=psp_a."
    assert d.diagnosis.target == {"bank": "BIG BANK"}, d.diagnosis


def test_a_route_slow_while_its_payments_succeed_is_still_a_latency_incident() -> None:
    cells = [Cell({"bank": b, "route": r, "method": "card", "issuer": "VISA"}, 200, {"INSUFFICIENT_FUNDS": 8},
                  p95_ms=(6_000.0 if r == "psp_a" else 500.0), p50_ms=(2_500.0 if r == "psp_a" else 280.0))
             for b in ("BIG BANK", "Other Bank") for r in ("psp_a", "psp_b")]
    snap = window(cells)
    d = RULES.decide(snap, context(healthy_history(_normal(cells))))
    assert d.diagnosis.target == {"route": "psp_a"} and d.diagnosis.summary.startswith("Latency degradation")


def test_every_route_slow_and_failing_is_the_platform_not_the_one_route_failing_a_little_less() -> None:
    # Session 10, met on a development draw at 2,766 payments/min: the platform's gateway timed out everywhere,
    # half of each route's attempts failing. One route failed 49 % (just under SLOW_FAILURE_SHARE), so its
    # slowness counted as its own, and "latency degradation on that route" (0.93) outweighed the failures,
    # with the alternative "the other routes are at their usual latency" — they were all as slow.
    slow = {"p95_ms": 26_000.0, "p50_ms": 3_400.0}
    cells = []
    for b in ("BIG BANK", "Other Bank", "Third Bank"):
        for r, failing in (("psp_a", 0.8), ("psp_b", 0.8), ("psp_c", 0.48)):
            n = 200
            cells.append(Cell({"bank": b, "route": r, "method": "card", "issuer": "VISA"}, n,
                              {"INSUFFICIENT_FUNDS": 8, "GATEWAY_TIMEOUT": round((failing - 0.04) * n)}, **slow))
    snap = window(cells)
    ctx = context(healthy_history(_normal(cells)))
    assert [s.key for s, _ in slow_not_failing(latency_candidates(snap, ctx))] == ["route=psp_c"]  # the shape
    d = RULES.decide(snap, ctx)
    assert not d.diagnosis.summary.startswith("Latency degradation"), d.diagnosis.summary
    assert d.diagnosis.category is Category.NETWORK and d.diagnosis.target == {}, d.diagnosis.summary


# -- a merchant that explains all of it ------------------------------------------------

def _merchant_failing_on_every_route() -> list[Cell]:
    """One merchant's integration fails on both routes it uses; most of its traffic is on psp_a."""
    def cell(merchant: str, route: str, n: int, failed: int) -> Cell:
        return Cell({"merchant_id": merchant, "route": route, "method": "card", "issuer": "VISA", "bank": "ABSA"},
                    n, {"SYSTEM_ERROR": failed} if failed > round(0.04 * n) else {"INSUFFICIENT_FUNDS": failed})
    return [cell("Ōmori Ramen", "psp_a", 40, 37), cell("Ōmori Ramen", "psp_b", 12, 10),
            cell("Shop A", "psp_a", 14, 1), cell("Shop A", "psp_b", 30, 1),
            cell("Shop B", "psp_b", 35, 2), cell("Shop B", "psp_c", 30, 1)]


def test_a_merchant_failing_on_every_route_it_uses_is_blamed_not_the_route_carrying_most_of_it() -> None:
    cells = _merchant_failing_on_every_route()
    healthy = [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(0.04 * c.attempts)}) for c in cells]
    d = RULES.decide(window(cells), context(healthy_history(healthy)))
    assert d.diagnosis.target == {"merchant_id": "Ōmori Ramen"}, d.diagnosis
    assert d.proposal.tool not in MOVES, d.proposal


def test_a_route_failing_for_every_merchant_is_still_the_route() -> None:
    def cell(merchant: str, route: str, n: int, failed: int) -> Cell:
        return Cell({"merchant_id": merchant, "route": route, "method": "card", "issuer": "VISA", "bank": "ABSA"},
                    n, {"GATEWAY_TIMEOUT": failed} if failed > round(0.04 * n) else {"INSUFFICIENT_FUNDS": failed})
    cells = [cell("Ōmori Ramen", "psp_a", 40, 30), cell("Shop A", "psp_a", 30, 22), cell("Shop A", "psp_b", 40, 1),
             cell("Shop B", "psp_b", 40, 2), cell("Shop B", "psp_c", 40, 1)]
    healthy = [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(0.04 * c.attempts)}) for c in cells]
    d = RULES.decide(window(cells), context(healthy_history(healthy)))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis


# -- the latency histogram's resolution ---------------------------------------------------

def _slow_route(p50_factor: float) -> list[Cell]:
    return [Cell({"bank": b, "route": r, "method": "card", "issuer": "VISA"}, 200, {"INSUFFICIENT_FUNDS": 8},
                 p95_ms=(1_500.0 if r == "psp_a" else 500.0), p50_ms=(500.0 * p50_factor if r == "psp_a" else 280.0))
            for b in ("BIG BANK", "Other Bank") for r in ("psp_a", "psp_b")]


def test_a_median_in_the_bucket_of_the_old_p95_is_not_a_slower_median() -> None:
    history = healthy_history(_normal(_slow_route(1.0)))
    assert latency_candidates(window(_slow_route(1.04)), context(history)) == []  # within one bucket (8 %)
    assert [s.key for s, _ in latency_candidates(window(_slow_route(1.3)), context(history))] == ["route=psp_a"]


# -- volume: a surge elsewhere is not a drop here ------------------------------------------

def _sale_at(merchant: str, factor: int, from_minute: int):  # type: ignore[no-untyped-def]
    def tweak(events, i, rng):  # type: ignore[no-untyped-def]
        if i < from_minute:
            return events
        extra = [e.__class__(**{**{f: getattr(e, f) for f in e.__slots__}, "payment_id": f"{e.payment_id}s{c}",
                                "ts": e.ts + c * 1e-3, "status": "success", "error_code": None})
                 for e in events if e.merchant_id == merchant for c in range(1, factor)]
        return sorted(events + extra, key=lambda e: e.ts)
    return tweak


def test_a_sale_at_one_merchant_does_not_make_every_other_merchant_vanish() -> None:
    run = play(9, _sale_at("shop 3", 20, 6))
    after = run.decisions[6:]
    assert all(d.proposal.tool == "no_action" and "vanished" not in d.diagnosis.summary for d in after), \
        [d.diagnosis.summary for d in after]


def test_a_merchant_whose_traffic_vanishes_during_a_sale_elsewhere_is_still_seen() -> None:
    from judgement_helpers import chain, drop

    run = play(9, chain(_sale_at("shop 3", 3, 6), drop(lambda e: e.merchant_id == "shop 5", 0.95, 6)))
    assert any(d.diagnosis.target == {"merchant_id": "shop 5"} for d in run.decisions[6:]), \
        [d.diagnosis.summary for d in run.decisions[6:]]


def test_the_last_seconds_of_a_burst_from_the_window_before_are_over_and_move_no_traffic() -> None:
    # 35 s of time-outs from second 35 of minute 5 to second 10 of minute 6, at 200 payments a minute.
    # Minute 5 sees a young fault (held), minute 6 its last 10 s in the lead third and a normal rest.
    # Before, minute 6 confirmed minute 5's finding, the tail (~18 attempts) was too thin to be judged,
    # and the move ran on its own authority (met on fresh held-out seed 770870942, after a hold).
    run = play(8, _fail_between("acq-two", 335.0, 370.0), volume=200)
    young, after = run.decisions[5], run.decisions[6]
    assert young.diagnosis.target == {"route": "acq-two"} and young.diagnosis.confidence <= HOLD_CONFIDENCE
    assert after.proposal.tool not in MOVES, (after.proposal, after.notes)
    assert any(n.startswith("burst over") for n in after.notes), after.notes


# -- a bank that does not answer, whatever scheme its cards carry ----------------------------

def _bank_link_down(codes: dict[str, int]) -> list[Cell]:
    """BIG BANK's cards are all VISA and it declines more than other banks as its normal; its link
    through psp_a fails with `codes`. Other banks' VISA cards on psp_a decline a little more this
    minute, so VISA x psp_a gathers those too and fits a little better than the bank x route pair."""
    def cell(bank: str, route: str, issuer: str, n: int, errors: dict[str, int]) -> Cell:
        return Cell({"bank": bank, "route": route, "method": "card", "issuer": issuer}, n, errors,
                    normal_rate=0.16 if bank == "BIG BANK" else 0.10)
    return [cell("BIG BANK", "psp_a", "VISA", 90, codes),
            cell("Other Bank", "psp_a", "VISA", 43, {"INSUFFICIENT_FUNDS": 12}),
            cell("Other Bank", "psp_a", "MASTERCARD", 66, {"INSUFFICIENT_FUNDS": 7}),
            cell("BIG BANK", "psp_b", "VISA", 300, {"INSUFFICIENT_FUNDS": 48}),
            cell("Other Bank", "psp_b", "VISA", 300, {"INSUFFICIENT_FUNDS": 30}),
            cell("Other Bank", "psp_b", "MASTERCARD", 300, {"INSUFFICIENT_FUNDS": 30})]


def _healthy_link() -> list[Cell]:
    return [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(c.normal_rate * c.attempts)},
                 normal_rate=c.normal_rate) for c in _bank_link_down({})]


def _ranked_and_decided(codes: dict[str, int]):  # type: ignore[no-untyped-def]
    from payops.graph.reasoners.rules import prepared

    snap, ctx = window(_bank_link_down(codes)), context(healthy_history(_healthy_link()))
    return [s.seg.key for s in RULES.ranked(prepared(snap, ctx), ctx)], RULES.decide(snap, ctx).diagnosis


def test_a_bank_that_does_not_answer_on_one_route_is_the_bank_not_the_scheme_its_cards_carry() -> None:
    ranked, d = _ranked_and_decided({"BANK_TIMEOUT": 27, "ISSUER_DOWN": 14, "INSUFFICIENT_FUNDS": 4})
    assert ranked[:2] == ["issuer=VISA,route=psp_a", "bank=BIG BANK,route=psp_a"]  # a near tie, the scheme ahead
    assert d.target == {"bank": "BIG BANK", "route": "psp_a"} and d.category is Category.ISSUER, d


def test_the_same_near_tie_with_network_codes_keeps_the_better_fit() -> None:
    ranked, d = _ranked_and_decided({"GATEWAY_TIMEOUT": 27, "NETWORK_ERROR": 14, "INSUFFICIENT_FUNDS": 4})
    assert ranked[0] == "issuer=VISA,route=psp_a"
    assert d.target == {"issuer": "VISA", "route": "psp_a"}, d


# -- one traffic under two names, at low volume -----------------------------------------------

def test_a_thin_route_that_carries_one_scheme_but_two_stray_payments_is_named_as_the_route() -> None:
    def cell(route: str, issuer: str, n: int, failed: int) -> Cell:
        return Cell({"route": route, "issuer": issuer, "method": "card", "bank": "ABSA"}, n,
                    {"SYSTEM_ERROR": failed} if failed > round(0.04 * n) else {"INSUFFICIENT_FUNDS": failed})
    # 30 attempts a minute on psp_a, all VISA but two: 2 of 30 is more than the 5 % share, yet the
    # same traffic (as a route carrying one scheme but a payment or two at higher volume).
    cells = [cell("psp_a", "VISA", 28, 20), cell("psp_a", "MASTERCARD", 2, 1),
             cell("psp_b", "VISA", 60, 2), cell("psp_b", "MASTERCARD", 40, 2)]
    healthy = [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(0.04 * c.attempts)}) for c in cells]
    d = RULES.decide(window(cells), context(healthy_history(healthy)))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis


# -- session 10: a thin tail, and a young latency reference --------------------------------------

def test_a_burst_over_before_a_thin_tail_is_over() -> None:
    # Met on a fresh draw (a 30 s blip on a route carrying 40 of 90 payments a minute): 28 of 45 failed, 8 of
    # the first 11, none of the last 9. Nine attempts are under the minimum a part of the window is judged on,
    # so the blip was not "over" and its strong evidence moved traffic autonomously. 0 of 9 where the route was
    # failing 78 % happens about once in a million; 0 of 2 is no evidence either way.
    from dataclasses import replace

    from judgement_helpers import crafted_segment

    from payops.graph.reasoners.timing import burst_over
    seg = crafted_segment((("route", "psp_a"),), 45, 28, {"GATEWAY_TIMEOUT": 28})
    over = replace(seg, lead_attempts=11, lead_failures=8, tail_attempts=9, tail_failures=0)
    assert burst_over(over, 10, 8)
    assert not burst_over(replace(over, tail_attempts=2), 10, 8)
    assert not burst_over(replace(over, tail_failures=6), 10, 8)  # 6 of 9: still failing


def _slow_route_confidence(per_bank: int, histories: tuple[int, ...]) -> dict[int, float]:
    """psp_a (two banks, `per_bank` attempts each a minute) 6x slower than usual; the latency finding's
    confidence after each number of healthy windows."""
    cells = [Cell({"bank": b, "route": r, "method": "card", "issuer": "VISA"}, 200 if r == "psp_b" else per_bank,
                  {"INSUFFICIENT_FUNDS": 8 if r == "psp_b" else 1},
                  p95_ms=(3_000.0 if r == "psp_a" else 500.0), p50_ms=(900.0 if r == "psp_a" else 280.0))
             for b in ("BIG BANK", "Other Bank") for r in ("psp_a", "psp_b")]
    snap = window(cells)
    found = {}
    for n in histories:
        ctx = context(healthy_history(_normal(cells), n))
        slow = slow_not_failing(latency_candidates(snap, ctx))
        assert [s.key for s, _ in slow] == ["route=psp_a"]
        found[n] = latency_finding(slow, snap, ctx).confidence
    return found


def test_a_slow_route_read_against_a_reference_younger_than_a_baseline_is_put_to_a_human() -> None:
    # Met on the same fresh draw: two minutes into a run, a route's p95 of a dozen attempts was 4x the 265 ms
    # of its first minute, and the route was rerouted autonomously (0.80) before anything was wrong.
    found = _slow_route_confidence(12, (2, 8))
    assert found[2] < 0.8 <= found[8]  # the young reference keeps it from the autonomy bar


def test_a_slow_route_read_against_a_p95_of_a_few_dozen_attempts_is_put_to_a_human() -> None:
    # Session 12, met on a fresh draw (a route at 15 payments/min in the lead-in of a platform outage): five
    # windows into the run the route's latency reference was a p95 read from ~60 attempts, and one 22 s
    # time-out beside a median a bucket above that reference rerouted it autonomously (0.87) in a healthy
    # minute. A p95 is the 5 slowest of every 100 attempts: read from fewer, it is a handful of payments.
    found = _slow_route_confidence(7, (5, 10))  # 14 attempts a minute: a reference read from 70, then 140
    assert found[5] < 0.8 <= found[10]


def test_a_route_whose_traffic_vanishes_beside_a_banks_decline_surge_is_still_seen() -> None:
    # Met on fresh draw I2 (a processor black-holing at 1,565 payments/min): in the minute it began, a small
    # bank's cards were declined for funds more than usual (z 4.4), and the customers' surge, which calls for
    # no action, was the whole verdict; the route that had lost 95 % of its traffic waited a minute.
    from judgement_helpers import chain, drop, fail

    run = play(8, chain(drop(lambda e: e.route == "acq one", 0.95, 6),
                        fail(lambda e: e.bank == "Lantern Bank" and e.method == "card", 0.3,
                             {"INSUFFICIENT_FUNDS": 1.0}, 6)))
    for d in run.decisions[6:]:
        assert (d.diagnosis.target, d.proposal.tool) == ({"route": "acq one"}, "reroute_traffic"), d.diagnosis.summary


def _marginal_route_outage(previous_confidence: float):  # type: ignore[no-untyped-def]
    from payops.models import Diagnosis

    cells = base_cells(400)
    snap = window(fail(cells, {"route": "psp_a"}, 0.12, {"GATEWAY_TIMEOUT": 0.6, "SYSTEM_ERROR": 0.4}))
    seg = snap.segment(route="psp_a")
    assert seg is not None and 4.0 <= seg.z < 8.0 and 8 <= seg.excess_failures < 24  # marginal evidence
    previous = Diagnosis(category=Category.NETWORK, target={"route": "psp_a"}, summary="route psp_a", evidence=(),
                         alternatives=(), confidence=previous_confidence, reasoner="rules")
    return RuleReasoner().decide(snap, context(healthy_history(cells, 8), previous=previous))


def test_a_marginal_finding_watched_the_window_before_is_put_to_a_human_not_acted_on() -> None:
    # Session 13, met on a fresh draw (a merchant's outage at 54 payments/min): its acquirer carried its failing
    # payments, was watched one minute (pooled evidence, confidence 0.53) and rerouted the next on marginal
    # evidence as "found in two consecutive windows". A reading the agent did not assert is not the first one.
    watched = _marginal_route_outage(0.53)
    assert watched.proposal.tool == "reroute_traffic" and watched.diagnosis.confidence <= 0.75, watched.diagnosis
    assert any(n.startswith("hold:") for n in watched.notes), watched.notes
    asserted = _marginal_route_outage(0.85)
    assert asserted.proposal.tool == "reroute_traffic" and not any(n.startswith("hold:") for n in asserted.notes)
