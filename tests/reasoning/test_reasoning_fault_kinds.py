"""The kind of failure decides which name the evidence supports (issue 14, session 7: `evidence.kind_rest`).

Met on the independent generator's development draws, rebuilt as crafted windows (reasoning_helpers): a
route's ramp named at all cards because the method's other route had a few more declines than usual that
minute, and at one scheme on the route because its other scheme's time-outs (4 of 19, all time-outs) were
too few to lift all its failures plainly. Customers' declines say nothing about a route's time-outs; a
route's time-outs on both its schemes say the route.
"""

from __future__ import annotations

from reasoning_helpers import Cell, context, healthy_history, window

from payops.graph.reasoners.rules import RuleReasoner

RULES = RuleReasoner()
BANKS = ("ABSA", "FNB", "NEDBANK", "CAPITEC")


def _card(route: str, issuer: str, per_bank: int, errors_by_bank: list[dict[str, int]], rate: float) -> list[Cell]:
    return [Cell({"bank": b, "route": route, "method": "card", "issuer": issuer}, per_bank, e, rate)
            for b, e in zip(BANKS, errors_by_bank, strict=True)]


def _calm(cells: list[Cell]) -> list[Cell]:
    return [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(c.attempts * c.normal_rate)}, c.normal_rate)
            for c in cells]


RAIL = [Cell({"bank": b, "route": "rail", "method": "payshap", "issuer": "PAYSHAP"}, 27, {"INSUFFICIENT_FUNDS": 1},
             0.05) for b in BANKS]


def test_one_routes_time_outs_beside_a_few_more_declines_on_the_other_route_are_the_route() -> None:
    # Card on psp_a: 21 of 100 failing, 15 of them time-outs; card on psp_b: 9 of 56 declined (usually
    # 8 %), no time-out. "Every route carrying card fails" was the reading.
    timeouts = [{"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 1, "INSUFFICIENT_FUNDS": 1},
                {"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 2, "INSUFFICIENT_FUNDS": 1},
                {"GATEWAY_TIMEOUT": 2, "NETWORK_ERROR": 2, "INSUFFICIENT_FUNDS": 2},
                {"SYSTEM_ERROR": 3, "INCORRECT_PIN": 1, "EXPIRED_CARD": 1}]
    declines = [{"INSUFFICIENT_FUNDS": 2, "DO_NOT_HONOR": 1}, {"INSUFFICIENT_FUNDS": 2},
                {"INSUFFICIENT_FUNDS": 2, "INCORRECT_PIN": 1}, {"INCORRECT_PIN": 1}]
    now = _card("psp_a", "VISA", 25, timeouts, 0.08) + _card("psp_b", "VISA", 14, declines, 0.08) + RAIL
    snap = window(now)
    card = snap.segment(method="card")
    assert card is not None and card.excess_failures > snap.segment(route="psp_a").excess_failures  # as met
    d = RULES.decide(snap, context(healthy_history(_calm(now), 8)))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis.summary
    assert d.proposal.target == {"route": "psp_a"}


def test_a_routes_time_outs_on_both_its_schemes_are_the_route_though_one_scheme_shows_few() -> None:
    # Mastercard on psp_a: 13 of 24 time out; Visa on psp_a: 4 of 20, every one a time-out (all its
    # failures rise only weakly, z < 2, but it never times out otherwise). psp_b is calm.
    mc = _card("psp_a", "MASTERCARD", 6, [{"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 1}, {"GATEWAY_TIMEOUT": 3},
                                          {"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 1},
                                          {"SYSTEM_ERROR": 2, "NETWORK_ERROR": 1}], 0.06)
    visa = _card("psp_a", "VISA", 5, [{"GATEWAY_TIMEOUT": 1}, {"NETWORK_ERROR": 1}, {"SYSTEM_ERROR": 1},
                                      {"GATEWAY_TIMEOUT": 1}], 0.087)
    other = (_card("psp_b", "VISA", 10, [{"INSUFFICIENT_FUNDS": 1}, {}, {"INSUFFICIENT_FUNDS": 1}, {}], 0.08)
             + _card("psp_b", "MASTERCARD", 8, [{}, {"INSUFFICIENT_FUNDS": 1}, {}, {"USER_DECLINED": 1}], 0.08))
    now = mc + visa + other
    snap = window(now)
    visa_on_a = snap.segment(issuer="VISA", route="psp_a")
    assert visa_on_a is not None and visa_on_a.z < 2.0  # the shape, as met
    d = RULES.decide(snap, context(healthy_history(_calm(now), 8)))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis.summary


def test_a_routes_thin_second_scheme_failing_in_time_outs_keeps_the_route_at_high_counts_too() -> None:
    # Session 10, met on a development draw at 2,756 payments/min: a route's outage, Mastercard 156 of 281
    # failing, Visa (thin on that route) 9 of 28, every one a time-out. In all failures Visa had risen a hair
    # under half as far as Mastercard (the test for "the part concentrates the trouble"); in time-outs, which
    # it never otherwise shows, as far. With 126 excess failures early attribution no longer applies:
    # "Mastercard's link to the acquirer" was the reading.
    mc = _card("psp_a", "MASTERCARD", 70, [{"GATEWAY_TIMEOUT": 21, "NETWORK_ERROR": 15, "INSUFFICIENT_FUNDS": 4},
                                           {"GATEWAY_TIMEOUT": 20, "SYSTEM_ERROR": 15, "INSUFFICIENT_FUNDS": 4},
                                           {"GATEWAY_TIMEOUT": 21, "NETWORK_ERROR": 14, "DO_NOT_HONOR": 4},
                                           {"SYSTEM_ERROR": 18, "GATEWAY_TIMEOUT": 17, "INSUFFICIENT_FUNDS": 4}], 0.1)
    visa = _card("psp_a", "VISA", 7, [{"GATEWAY_TIMEOUT": 2, "NETWORK_ERROR": 1}, {"SYSTEM_ERROR": 2},
                                      {"GATEWAY_TIMEOUT": 2}, {"NETWORK_ERROR": 1}], 0.1)
    other = (_card("psp_b", "VISA", 60, [{"INSUFFICIENT_FUNDS": 5}, {"INSUFFICIENT_FUNDS": 6},
                                         {"INSUFFICIENT_FUNDS": 6, "NETWORK_ERROR": 1}, {"INSUFFICIENT_FUNDS": 6}], 0.1)
             + _card("psp_b", "MASTERCARD", 60, [{"INSUFFICIENT_FUNDS": 6}, {"INSUFFICIENT_FUNDS": 5},
                                                 {"USER_DECLINED": 6}, {"INSUFFICIENT_FUNDS": 6}], 0.1))
    now = mc + visa + other + RAIL
    snap = window(now)
    mc_on_a, visa_on_a = snap.segment(issuer="MASTERCARD", route="psp_a"), snap.segment(issuer="VISA", route="psp_a")
    assert mc_on_a is not None and visa_on_a is not None and mc_on_a.excess_failures > 24  # past early attribution
    d = RULES.decide(snap, context(healthy_history(_calm(now), 8)))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis.summary
    assert d.proposal.target == {"route": "psp_a"}


def test_a_retry_storm_is_not_read_by_the_timing_of_its_failures() -> None:
    # Met on development draws: a retry storm (declines retried three times) whose failures happened to
    # fall early in the window was answered "a burst that is already over: no traffic move". The storm's
    # evidence is retries; when its failures fell says nothing about whether the policy is still wrong.
    from dataclasses import replace

    from reasoning_helpers import base_cells, fail
    cells = base_cells(1200)
    snap = window(fail(cells, {}, 0.03, {"INSUFFICIENT_FUNDS": 1.0}, retried=3.0))
    t = snap.total
    snap = replace(snap, total=replace(t, lead_attempts=t.attempts // 3, lead_failures=t.failures // 2,
                                       tail_attempts=t.attempts // 3, tail_failures=int(t.attempts // 3 * 0.04)))
    d = RULES.decide(snap, context(healthy_history(cells, 8)))
    assert d.diagnosis.summary.startswith("Retry storm"), d.diagnosis.summary
    assert d.proposal.tool == "adjust_retry_policy", (d.proposal.tool, d.notes)


def test_a_retry_storm_held_for_a_human_quotes_its_retries_not_its_failures() -> None:
    # 18 retries where one is usual (z 17) is short of the strong bar's excess (24) in one window: a human
    # confirms. The audit must say which figures were marginal: the retries, the storm's own evidence.
    from reasoning_helpers import base_cells, fail
    cells = base_cells(300)
    d = RULES.decide(window(fail(cells, {}, 0.02, {"INSUFFICIENT_FUNDS": 1.0}, retried=3.0)),
                     context(healthy_history(cells, 8)))
    assert d.proposal.tool == "adjust_retry_policy", d.diagnosis.summary
    held = [n for n in d.notes if n.startswith("hold:marginal evidence")]
    assert held and "z=17.0, 17 excess retries" in held[0], d.notes


def test_one_outage_reported_under_different_codes_by_two_acquirers_stays_the_method() -> None:
    # From a review of the rule above: psp_a times out and psp_b answers ISSUER_DOWN for the same cards.
    # The rest outside psp_a rises in a place's failures of another kind, not in customers' declines:
    # the broader name stays.
    from reasoning_helpers import base_cells, fail
    cells = base_cells(1200)
    now = fail(fail(cells, {"route": "psp_a"}, 0.3, {"GATEWAY_TIMEOUT": 1.0}), {"route": "psp_b"}, 0.2,
               {"ISSUER_DOWN": 1.0})
    d = RULES.decide(window(now), context(healthy_history(cells, 8)))
    assert d.diagnosis.target == {"method": "card"}, d.diagnosis.summary


def test_a_code_outside_the_vocabulary_seen_only_at_one_bank_is_read_as_that_banks_failure() -> None:
    # Session 11, met on development draws (ACS outages): a bank's 3-D Secure server fails its cards with a
    # code its acquirer invented. Seen at that bank alone, it is the bank's failure as plainly as ISSUER_DOWN
    # would be; an unknown kind of fault at an unknown place it is not. It was watched at confidence 0.44-0.60.
    from reasoning_helpers import base_cells, fail

    cells = base_cells(300)
    history = context(healthy_history(cells, 8))

    def decided(code: str):  # type: ignore[no-untyped-def]
        now = fail(cells, {"bank": "FNB", "method": "card"}, 0.25, {code: 0.6, "DO_NOT_HONOR": 0.4})
        return RULES.decide(window(now), history)

    unknown, known = decided("3DS_ACS_UNAVAILABLE"), decided("ISSUER_DOWN")
    assert unknown.diagnosis.target == known.diagnosis.target and unknown.diagnosis.target["bank"] == "FNB"
    assert unknown.diagnosis.confidence >= known.diagnosis.confidence - 0.05
    assert unknown.diagnosis.confidence >= 0.8 and unknown.proposal.tool == "alert_ops"
    assert any("3DS_ACS_UNAVAILABLE (outside the vocabulary)" in e for e in unknown.diagnosis.evidence)


def test_a_code_outside_the_vocabulary_that_one_merchant_sends_is_not_read_as_its_acquirers() -> None:
    # Met on development draws (a merchant's integration broken at 54-68 payments/min): its INVALID_MERCHANT
    # refusals, read as network-type at the acquirer carrying it, lifted the acquirer's reroute over the
    # autonomy threshold. Codes nearly all from one shop are the shop's, not the place's around it.
    from payops.graph.reasoners.classification import read_by_place
    from payops.graph.reasoners.evidence import background_mix, excess_by_family

    shop = {"method": "card", "route": "r1", "issuer": "VISA", "region": "north"}
    cells = [Cell({**shop, "bank": b, "merchant_id": m}, 20) for b in ("A", "B") for m in ("m1", "m2", "m3")]
    cells += [Cell({**shop, "bank": b, "merchant_id": "m4", "route": "r2"}, 40) for b in ("A", "B")]
    broken = [Cell(c.dims, c.attempts, {"SYSTEM_ERROR": 10, "INVALID_MERCHANT": 8}) if c.dims["merchant_id"] == "m1"
              else c for c in cells]
    snap = window(broken)
    route = snap.segment(route="r1")
    assert route is not None
    excess = excess_by_family(route, background_mix(snap, route))
    assert read_by_place(excess, route, snap, 4.0) == (excess, None)
    # The same codes spread over the acquirer's shops are the acquirer's.
    spread = [Cell(c.dims, c.attempts, {"SYSTEM_ERROR": 4, "INVALID_MERCHANT": 3}) if c.dims["route"] == "r1" else c
              for c in cells]
    snap = window(spread)
    route = snap.segment(route="r1")
    assert route is not None
    read, note = read_by_place(excess_by_family(route, background_mix(snap, route)), route, snap, 4.0)
    assert note is not None and "unknown" not in read and read["network"] > 0


def test_a_schemes_refusals_and_time_outs_together_are_one_fault_not_mixed_evidence() -> None:
    # Session 12, met on a fresh draw at 314 payments/min: Visa's network down across banks and routes, its
    # first window 18 of 47 failing: ISSUER_DOWN 7, time-outs 5, customers' declines 6 (here 17 of 48: 6, 5,
    # 6). Neither family alone carried half of the excess, and "no single kind of fault" cost the finding 0.15: watched
    # at 0.54, nobody told. At a scheme, a route or a bank both families name the same failure.
    routes = ("psp_a", "psp_b", "psp_c", "psp_d")
    codes = [{"ISSUER_DOWN": 2, "INSUFFICIENT_FUNDS": 1}, {"GATEWAY_TIMEOUT": 1, "EXPIRED_CARD": 1},
             {"ISSUER_DOWN": 1, "NETWORK_ERROR": 1}, {"ISSUER_DOWN": 1, "INSUFFICIENT_FUNDS": 1},
             {"ISSUER_DOWN": 1, "GATEWAY_TIMEOUT": 1}, {"GATEWAY_TIMEOUT": 1, "INSUFFICIENT_FUNDS": 1},
             {"ISSUER_DOWN": 1, "GATEWAY_TIMEOUT": 1, "USER_DECLINED": 1}, {"INSUFFICIENT_FUNDS": 1}]
    places = [(b, r) for r in routes for b in ("ABSA", "FNB")]
    visa = [Cell({"bank": b, "route": r, "method": "card", "issuer": "VISA"}, 6, e, 0.08)
            for (b, r), e in zip(places, codes, strict=True)]
    mastercard = [Cell({"bank": b, "route": r, "method": "card", "issuer": "MASTERCARD"}, 20,
                       {"INSUFFICIENT_FUNDS": 1, "EXPIRED_CARD": 1} if b == "ABSA" else {"INSUFFICIENT_FUNDS": 2}, 0.09)
                  for r in routes for b in ("ABSA", "FNB")]
    now = visa + mastercard + RAIL
    snap = window(now)
    scheme = snap.segment(issuer="VISA")
    assert scheme is not None and scheme.failures == 17 and scheme.attempts == 48  # the shape, as met
    d = RULES.decide(snap, context(healthy_history(_calm(now), 8)))
    assert d.diagnosis.target == {"issuer": "VISA"}, d.diagnosis.summary
    assert d.diagnosis.confidence >= 0.6, d.diagnosis.confidence
    assert d.proposal.tool == "alert_ops" and d.proposal.target == {"issuer": "VISA"}, d.proposal
