"""Parts and wholes read by the kind of failure (issue 14, session 13): when a small part takes the blame from its
broader segment (`RuleReasoner._descend`: a part within it by its route's one method, a part holding the broader
segment's time-outs), when the broader segment takes it back (`rests.rest_fails_in_kind`), when two names are one
traffic (`findings.same_traffic`), and a bank's name against its scheme's link (`tiebreaks.link_for_link_codes`).

Each was met on a development or fresh draw of the independent generator and rebuilt as crafted windows.
"""

from __future__ import annotations

from reasoning_helpers import Cell, context, healthy_history, window

from payops.graph.reasoners.rules import RuleReasoner
from payops.models import Category

RULES = RuleReasoner()


def _thin_bank_on_card_acquirers(on_a_errors: dict[str, int], elsewhere_errors: dict[str, int]) -> list[Cell]:
    """BIG's cards: 8 a minute on psp_a, 12 on psp_b; 10 instant payments; three other banks beside it."""
    cells = [Cell({"bank": "BIG", "method": "card", "route": "psp_a", "issuer": "VISA"}, 8, on_a_errors),
             Cell({"bank": "BIG", "method": "card", "route": "psp_b", "issuer": "VISA"}, 12, elsewhere_errors),
             Cell({"bank": "BIG", "method": "payshap", "route": "rail", "issuer": "PAYSHAP"}, 10)]
    for bank in ("S1", "S2", "S3"):
        cells += [Cell({"bank": bank, "method": "card", "route": r, "issuer": "VISA"}, 12) for r in ("psp_a", "psp_b")]
        cells.append(Cell({"bank": bank, "method": "payshap", "route": "rail", "issuer": "PAYSHAP"}, 10))
    return cells


def test_a_bank_failing_every_payment_on_one_card_acquirer_is_named_there_though_too_thin_to_be_a_finding() -> None:
    # Session 13, met on fresh draw K2 (a bank failing on one acquirer only, 86 payments/min): 8 of the bank's 8
    # cards on that acquirer failed with bank-side codes, 1 of 11 elsewhere (a DO_NOT_HONOR). Only "the bank's
    # cards" was a finding (the pair has fewer attempts than a finding needs), and "the bank across routes" was
    # alerted. The pair lies within the bank's cards (its acquirer carries cards only) and holds their excess.
    cells = _thin_bank_on_card_acquirers({}, {})
    now = _thin_bank_on_card_acquirers({"ISSUER_DOWN": 5, "BANK_TIMEOUT": 3}, {"DO_NOT_HONOR": 1})
    snap = window(now)
    on_a = snap.segment(bank="BIG", route="psp_a")
    assert on_a is not None and on_a.attempts < 10  # not a finding on its own
    d = RULES.decide(snap, context(healthy_history(cells, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.ISSUER, {"bank": "BIG", "route": "psp_a"}), \
        d.diagnosis.summary


def test_a_thin_bank_failing_on_both_card_acquirers_stays_the_banks_cards() -> None:
    # The guard: the bank's cards on its other acquirer fail the same way, so its cards are the finding.
    cells = _thin_bank_on_card_acquirers({}, {})
    now = _thin_bank_on_card_acquirers({"ISSUER_DOWN": 5, "BANK_TIMEOUT": 3}, {"ISSUER_DOWN": 6, "BANK_TIMEOUT": 4})
    d = RULES.decide(window(now), context(healthy_history(cells, 8)))
    assert d.diagnosis.category is Category.ISSUER and d.diagnosis.target.get("route") is None, d.diagnosis.summary
    assert d.diagnosis.target.get("bank") == "BIG", d.diagnosis.summary


def _schemes_on_one_route(visa_errors: dict[str, int], mc_errors: dict[str, int]) -> list[Cell]:
    """Route r1 carries 8 VISA and 34 Mastercard attempts a minute, over two banks; r2 the same, healthy."""
    out = []
    for i, bank in enumerate(("A", "B")):
        for route in ("r1", "r2"):
            on_r1 = route == "r1"
            out += [Cell({"bank": bank, "method": "card", "route": route, "issuer": "VISA"}, 4,
                         {k: v // 2 + (v % 2 if i == 0 else 0) for k, v in visa_errors.items()} if on_r1 else {},
                         normal_rate=0.06),
                    Cell({"bank": bank, "method": "card", "route": route, "issuer": "MC"}, 17,
                         {k: v // 2 + (v % 2 if i == 0 else 0) for k, v in mc_errors.items()} if on_r1
                         else {"INSUFFICIENT_FUNDS": 1}, normal_rate=0.06)]
    return out


def test_a_schemes_link_holding_all_of_a_routes_time_outs_is_named_though_the_other_scheme_declines_more() -> None:
    # Session 13, met on a fresh draw (a scheme's link to one acquirer, 103 payments/min): 6 of the route's 8 VISA
    # attempts timed out, while its Mastercard payments had 7 insufficient-funds declines in 33 (a customers'
    # fluctuation). VISA held half the route's excess failures (a small part must hold 70 % to take the blame)
    # and the route was named across banks. Read by kind, VISA holds every time-out the route has.
    healthy = _schemes_on_one_route({}, {"INSUFFICIENT_FUNDS": 2})
    now = _schemes_on_one_route({"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 3}, {"INSUFFICIENT_FUNDS": 7})
    snap = window(now)
    link, route = snap.segment(issuer="VISA", route="r1"), snap.segment(route="r1")
    assert link is not None and route is not None and link.excess_failures < 0.7 * route.excess_failures
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"issuer": "VISA", "route": "r1"}), \
        d.diagnosis.summary


def test_a_route_whose_other_scheme_times_out_too_stays_the_route() -> None:
    # The guard: Mastercard's declines beside VISA's time-outs are time-outs too: the route.
    healthy = _schemes_on_one_route({}, {"INSUFFICIENT_FUNDS": 2})
    now = _schemes_on_one_route({"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 3}, {"GATEWAY_TIMEOUT": 6, "NETWORK_ERROR": 4})
    d = RULES.decide(window(now), context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"route": "r1"}), d.diagnosis.summary


def _one_scheme_bank_on_r1(a_visa_errors: dict[str, int], b_declines: int = 2) -> list[Cell]:
    """Bank A issues VISA (and the odd Diners card), bank B Mastercard; both on routes r1 and r2."""
    out = []
    for route in ("r1", "r2"):
        out += [Cell({"bank": "A", "method": "card", "route": route, "issuer": "VISA"}, 8,
                     a_visa_errors if route == "r1" else {}, normal_rate=0.06),
                Cell({"bank": "A", "method": "card", "route": route, "issuer": "DINERS"}, 1,
                     {"INSUFFICIENT_FUNDS": 1} if route == "r1" else {}, normal_rate=0.06),
                Cell({"bank": "B", "method": "card", "route": route, "issuer": "MC"}, 30,
                     {"INSUFFICIENT_FUNDS": b_declines if route == "r1" else 2}, normal_rate=0.06)]
    return out


def test_time_outs_of_a_bank_that_issues_one_scheme_are_that_schemes_link_not_the_bank() -> None:
    # Session 13, the same fresh draw: every VISA card on the route came from one bank, so the bank on the route
    # (7 of 9, a decline among them) fitted better than VISA on the route (6 of 8) and "the bank on this route
    # only" was the reading, with time-outs and network errors for codes. A bank answers for itself with
    # bank-side codes (`bank_for_bank_codes`); time-outs between an acquirer and a scheme are the link's.
    healthy = _one_scheme_bank_on_r1({})
    snap = window(_one_scheme_bank_on_r1({"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 3}, b_declines=6))
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"issuer": "VISA", "route": "r1"}), \
        d.diagnosis.summary


def test_bank_side_codes_of_a_bank_that_issues_one_scheme_stay_the_banks() -> None:
    healthy = _one_scheme_bank_on_r1({})
    snap = window(_one_scheme_bank_on_r1({"BANK_TIMEOUT": 3, "ISSUER_DOWN": 3}, b_declines=6))
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert d.diagnosis.target.get("bank") == "A" and "issuer" not in d.diagnosis.target, d.diagnosis.summary


def _ramp_reaching_visa(mc_time_outs: int, visa_time_outs: int, visa_declines: int = 27) -> list[Cell]:
    """Route r1 and r2 each carry 1,100 Mastercard and 490 VISA attempts a minute (6 % declines, a time-out or
    two); on r1 Mastercard has `mc_time_outs` time-outs and VISA `visa_time_outs`, with `visa_declines`."""
    out = []
    for route in ("r1", "r2"):
        ramp = route == "r1"
        out += [Cell({"bank": "A", "method": "card", "route": route, "issuer": "MC"}, 1100,
                     {"INSUFFICIENT_FUNDS": 64, "GATEWAY_TIMEOUT": mc_time_outs if ramp else 2}, normal_rate=0.06),
                Cell({"bank": "A", "method": "card", "route": route, "issuer": "VISA"}, 490,
                     {"INSUFFICIENT_FUNDS": visa_declines if ramp else 27, "GATEWAY_TIMEOUT": visa_time_outs if ramp
                      else 1}, normal_rate=0.06)]
    return out


def test_a_ramp_reaching_the_routes_second_scheme_in_time_outs_is_the_route() -> None:
    # Session 13, met on a development draw (a route's ramp at 4,451 payments/min): the first scheme failed 114 of
    # 1,096 (51 time-outs), the second 21 of 395 with 11 time-outs where 3 are usual, and a few fewer declines.
    # In all failures the second scheme's rise was no rise (z 1.6): "Mastercard's link to the route" was named.
    # In time-outs it had risen over half as far as the first: the route.
    healthy = _ramp_reaching_visa(2, 1)
    snap = window(_ramp_reaching_visa(51, 14, visa_declines=18))
    visa = snap.segment(issuer="VISA", route="r1")
    assert visa is not None and visa.z < 2.0  # in all failures the second scheme has not risen
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"route": "r1"}), d.diagnosis.summary


def test_a_second_scheme_with_its_usual_time_outs_leaves_the_first_schemes_link() -> None:
    healthy = _ramp_reaching_visa(2, 1)
    d = RULES.decide(window(_ramp_reaching_visa(51, 2, visa_declines=18)), context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"issuer": "MC", "route": "r1"}), \
        d.diagnosis.summary


def _mostly_mastercard_route(visa: int, visa_failing: int) -> list[Cell]:
    """Route r1 carries 280 Mastercard payments and `visa` VISA ones; r2 carries both, 150 each."""
    return [Cell({"bank": "A", "method": "card", "route": "r1", "issuer": "MC"}, 280,
                 {"GATEWAY_TIMEOUT": 120, "NETWORK_ERROR": 122}, normal_rate=0.06),
            Cell({"bank": "A", "method": "card", "route": "r1", "issuer": "VISA"}, visa,
                 {"INSUFFICIENT_FUNDS": visa_failing} if visa_failing else {}, normal_rate=0.06),
            Cell({"bank": "A", "method": "card", "route": "r2", "issuer": "MC"}, 150, {"INSUFFICIENT_FUNDS": 9},
                 normal_rate=0.06),
            Cell({"bank": "A", "method": "card", "route": "r2", "issuer": "VISA"}, 150, {"INSUFFICIENT_FUNDS": 9},
                 normal_rate=0.06)]


def _healthy_mostly_mastercard(visa: int) -> list[Cell]:
    return [Cell(c.dims, c.attempts, {"INSUFFICIENT_FUNDS": round(0.06 * c.attempts)}, normal_rate=0.06)
            for c in _mostly_mastercard_route(visa, 0)]


def test_a_schemes_link_on_a_route_carrying_a_few_other_payments_that_pass_is_the_link_not_the_route() -> None:
    # Session 13, met on a development draw (a scheme's link, 1,140 payments/min): Mastercard failed 242 of 279 on
    # the route, its 13 VISA payments 1; the two names differed by under 5 % and were "the same traffic", the
    # route acted on. Thirteen payments going through are enough to say the route works for VISA.
    d = RULES.decide(window(_mostly_mastercard_route(13, 1)), context(healthy_history(_healthy_mostly_mastercard(13),
                                                                                      8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.NETWORK, {"issuer": "MC", "route": "r1"}), \
        d.diagnosis.summary


def test_a_route_carrying_one_scheme_but_for_a_payment_or_two_is_acted_on_as_the_route() -> None:
    d = RULES.decide(window(_mostly_mastercard_route(2, 0)), context(healthy_history(_healthy_mostly_mastercard(2),
                                                                                     8)))
    assert d.diagnosis.target == {"route": "r1"}, d.diagnosis.summary


def _bank_on_r1(bank_errors: dict[str, int]) -> list[Cell]:
    """Bank B issues Mastercard only: 27 of its cards a minute on r1, as many on r2; bank C's 2 Mastercard and 56
    VISA cards on r1, as many on r2."""
    out = []
    for route in ("r1", "r2"):
        on_r1 = route == "r1"
        out += [Cell({"bank": "B", "method": "card", "route": route, "issuer": "MC"}, 27,
                     bank_errors if on_r1 else {"INSUFFICIENT_FUNDS": 2}, normal_rate=0.08),
                Cell({"bank": "C", "method": "card", "route": route, "issuer": "MC"}, 2,
                     {"GATEWAY_TIMEOUT": 1} if on_r1 and bank_errors else {}, normal_rate=0.08),
                Cell({"bank": "C", "method": "card", "route": route, "issuer": "VISA"}, 56, {"INSUFFICIENT_FUNDS": 4},
                     normal_rate=0.08)]
    return out


def test_a_banks_own_codes_with_a_few_system_errors_and_declines_beside_them_name_the_bank_not_the_link() -> None:
    # Session 13, met on a development draw (a bank failing on one acquirer, 151 payments/min): the bank held 15 of
    # its scheme's 16 failures there, 10 of them bank-side codes, 2 system errors, 3 declines (its usual ones and
    # a few). Bank-side codes were 73 % of the excess, short of the 75 % that names the bank, and "Mastercard's
    # link to the acquirer" was the reading. Read among a place's codes only (declines name no place): 77 %.
    healthy = _bank_on_r1({"INSUFFICIENT_FUNDS": 2})
    snap = window(_bank_on_r1({"BANK_TIMEOUT": 5, "ISSUER_DOWN": 5, "SYSTEM_ERROR": 2, "INSUFFICIENT_FUNDS": 3}))
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.ISSUER, {"bank": "B", "route": "r1"}), \
        d.diagnosis.summary


def test_time_outs_with_a_bank_side_code_or_two_on_a_one_scheme_banks_cards_stay_the_link() -> None:
    healthy = _bank_on_r1({"INSUFFICIENT_FUNDS": 2})
    snap = window(_bank_on_r1({"GATEWAY_TIMEOUT": 6, "NETWORK_ERROR": 4, "BANK_TIMEOUT": 2, "INSUFFICIENT_FUNDS": 3}))
    d = RULES.decide(snap, context(healthy_history(healthy, 8)))
    assert "bank" not in d.diagnosis.target, d.diagnosis.summary


def _a_scheme_on_two_routes(visa_r1: dict[str, int], visa_r2: dict[str, int], mc_r1: dict[str, int]) -> list[Cell]:
    """VISA: 176 attempts a minute on r1, 66 on r2; Mastercard 80 on r1, 56 on r2; over two banks."""
    def split(errors: dict[str, int], i: int) -> dict[str, int]:
        return {k: v // 2 + (v % 2 if i == 0 else 0) for k, v in errors.items()}
    out = []
    for i, bank in enumerate(("A", "B")):
        out += [Cell({"bank": bank, "method": "card", "route": "r1", "issuer": "VISA"}, 88, split(visa_r1, i),
                     normal_rate=0.065),
                Cell({"bank": bank, "method": "card", "route": "r1", "issuer": "MC"}, 40, split(mc_r1, i),
                     normal_rate=0.055),
                Cell({"bank": bank, "method": "card", "route": "r2", "issuer": "VISA"}, 33, split(visa_r2, i),
                     normal_rate=0.046),
                Cell({"bank": bank, "method": "card", "route": "r2", "issuer": "MC"}, 28,
                     split({"INSUFFICIENT_FUNDS": 1}, i), normal_rate=0.055)]
    return out


RAMP_ON_R1 = {"GATEWAY_TIMEOUT": 5, "NETWORK_ERROR": 5, "SYSTEM_ERROR": 6, "INSUFFICIENT_FUNDS": 6, "USER_DECLINED": 2,
              "DO_NOT_HONOR": 2, "INCORRECT_PIN": 1, "EXPIRED_CARD": 1, "BANK_TIMEOUT": 2}
MC_ON_R1 = {"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 2, "DO_NOT_HONOR": 1, "INSUFFICIENT_FUNDS": 2}


def test_a_ramping_route_is_not_named_at_the_scheme_whose_other_route_had_three_refusals() -> None:
    # Session 14, met on fresh draw L7 (a route's ramp, 563 payments/min): in its second minute VISA fitted a
    # hair better than the route; all of VISA's time-outs were on the ramping route, its 66 payments on the other
    # route had 6 declines and no time-out. Three were DO_NOT_HONOR where 0.94 are usual: z 2.1 on the normal
    # score ("a place's fault in the rest"), once in 23 on the exact tail; and a rest too close to the part in
    # all failures to tell apart was never read by kind. "A scheme failing across routes" was alerted.
    healthy = _a_scheme_on_two_routes({"INSUFFICIENT_FUNDS": 6, "DO_NOT_HONOR": 2, "USER_DECLINED": 2},
                                      {"INSUFFICIENT_FUNDS": 2, "DO_NOT_HONOR": 1},
                                      {"INSUFFICIENT_FUNDS": 2, "DO_NOT_HONOR": 1})
    now = _a_scheme_on_two_routes(RAMP_ON_R1, {"DO_NOT_HONOR": 3, "INCORRECT_PIN": 2, "INSUFFICIENT_FUNDS": 1},
                                  MC_ON_R1)
    d = RULES.decide(window(now), context(healthy_history(healthy, 8)))
    assert d.diagnosis.category is Category.NETWORK and d.diagnosis.target.get("route") == "r1", d.diagnosis.summary
    # The guard: time-outs on the scheme's other route too say the scheme, across routes.
    spread = _a_scheme_on_two_routes(RAMP_ON_R1, {"GATEWAY_TIMEOUT": 3, "NETWORK_ERROR": 2, "INCORRECT_PIN": 2,
                                                  "INSUFFICIENT_FUNDS": 1}, MC_ON_R1)
    d = RULES.decide(window(spread), context(healthy_history(healthy, 8)))
    assert d.diagnosis.target == {"issuer": "VISA"}, d.diagnosis.summary


def _bank_b_on_r1(b_on_r1: dict[str, int], others_on_r1: dict[str, int]) -> list[Cell]:
    """Banks A, B, C: cards on r1 and r2 (30 a minute each, B only 14 on r1), instant payments on a rail."""
    cells = []
    for bank in ("A", "B", "C"):
        for route in ("r1", "r2"):
            errors = (b_on_r1 if (bank, route) == ("B", "r1")
                      else others_on_r1 if route == "r1" else {"INSUFFICIENT_FUNDS": 2, "DO_NOT_HONOR": 1})
            cells.append(Cell({"bank": bank, "method": "card", "route": route, "issuer": "VISA"},
                              14 if (bank, route) == ("B", "r1") else 30, errors, normal_rate=0.08))
        cells.append(Cell({"bank": bank, "method": "payshap", "route": "rail", "issuer": "PAYSHAP"}, 10,
                          normal_rate=0.08))
    return cells


def test_a_part_carries_its_own_codes_though_the_rest_shows_refusals_of_the_same_family() -> None:
    # Session 14, met on fresh draw N2 (a bank failing on one acquirer, 198 payments/min): the bank's 8 time-outs,
    # bank time-outs and outages were all on one acquirer; the broader name's other traffic had 4 DO_NOT_HONOR
    # (a bank-side code by family, customers' refusals here). Counted by family, the part held 63% of the
    # broader name's bank-side failures (70% needed) and stayed unnamed. Counted in its own codes, all of them.
    healthy = _bank_b_on_r1({"INSUFFICIENT_FUNDS": 1}, {"INSUFFICIENT_FUNDS": 2, "DO_NOT_HONOR": 1})
    outage = {"BANK_TIMEOUT": 3, "ISSUER_DOWN": 2, "SYSTEM_ERROR": 2}
    now = _bank_b_on_r1(outage, {"INSUFFICIENT_FUNDS": 5, "DO_NOT_HONOR": 2})
    d = RULES.decide(window(now), context(healthy_history(healthy, 8)))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.ISSUER, {"bank": "B", "route": "r1"}), \
        d.diagnosis.summary
    # The guard: the other banks' cards on r1 time out too: the route.
    now = _bank_b_on_r1(outage, {"INSUFFICIENT_FUNDS": 5, "DO_NOT_HONOR": 2, "GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 1})
    d = RULES.decide(window(now), context(healthy_history(healthy, 8)))
    assert d.diagnosis.target == {"route": "r1"}, d.diagnosis.summary
