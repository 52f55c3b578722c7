"""Low volume: repeat retries, exact tails for tiny counts, devices judged against their peers,
and pooled evidence that keeps its trust."""

from __future__ import annotations

import dataclasses

import pytest
from reasoning_helpers import (
    BANKS,
    END,
    ISSUERS,
    METHODS,
    ROUTES,
    Cell,
    base_cells,
    context,
    fail,
    healthy_history,
    network_cells,
    window,
)

from payops.graph.reasoners.evidence import NETWORK_CODES, code_burst_z, pool, repeat_retries
from payops.graph.reasoners.findings import cold
from payops.graph.reasoners.reference import as_of, prepared
from payops.graph.reasoners.rules import RuleReasoner
from payops.models import Category
from payops.signals.baseline import binomial_tail_z, binomial_z
from payops.signals.window import WindowSnapshot

RULES = RuleReasoner()
PALM = {"bank": "FNB", "method": "palm", "route": "rail", "issuer": "PAYSHAP"}


def _measured(cells: list[Cell], first_fails_of=lambda c: sum(c.errors.values()) - c.retries) -> list[Cell]:
    return [dataclasses.replace(c, first_fails=max(0, first_fails_of(c))) for c in cells]


# -- exact tails -------------------------------------------------------------------------------

@pytest.mark.parametrize("k,n,p", [(5, 18, 0.053), (3, 4, 0.05), (9, 20, 0.05), (4, 10, 0.02)])
def test_the_exact_tail_is_more_cautious_than_the_normal_score_on_tiny_counts(k: int, n: int, p: float) -> None:
    assert binomial_tail_z(k, n, p) < binomial_z(k, n, p)


def test_the_exact_tail_agrees_with_the_normal_score_on_large_counts_and_grows_with_the_count() -> None:
    assert binomial_tail_z(3_300, 100_000, 0.03) == pytest.approx(binomial_z(3_300, 100_000, 0.03), abs=0.1)
    scores = [binomial_tail_z(k, 40, 0.05) for k in range(0, 12)]
    assert scores == sorted(scores) and scores[0] < 0 < scores[-1]


# -- retry storms ------------------------------------------------------------------------------

def _timeouts_retried(per_failed_payment: float) -> list[Cell]:
    """FNB times out on 40% of its first attempts; each failed payment is retried this many times."""
    out = []
    for c in base_cells():
        if c.dims["bank"] != "FNB":
            out.append(dataclasses.replace(c, first_fails=sum(c.errors.values())))
            continue
        first_failed = int(c.attempts * 0.4)
        retries = int(round(first_failed * per_failed_payment))
        failed_retries = int(round(retries * 0.4))
        errors = {**c.errors, "BANK_TIMEOUT": first_failed + failed_retries}
        out.append(dataclasses.replace(c, attempts=c.attempts + retries, errors=errors, retries=retries,
                                       first_fails=sum(c.errors.values()) + first_failed))
    return out


def test_payments_retried_again_and_again_are_a_storm_though_every_retry_follows_a_timeout() -> None:
    cells = _timeouts_retried(per_failed_payment=2.5)
    snap = window(cells)
    assert repeat_retries(snap.total) > 0
    d = RULES.decide(snap, context(healthy_history(base_cells())))
    assert (d.diagnosis.category, d.diagnosis.target, d.proposal.tool) == (Category.CONFIG, {}, "adjust_retry_policy")
    assert any("retries beyond one per failed first attempt" in e for e in d.diagnosis.evidence)


def test_one_retry_per_failed_payment_is_an_outage_not_a_storm() -> None:
    d = RULES.decide(window(_timeouts_retried(per_failed_payment=1.0)), context(healthy_history(base_cells())))
    assert d.diagnosis.category is Category.ISSUER and d.diagnosis.target == {"bank": "FNB"}


def test_repeat_retries_are_zero_when_the_window_did_not_measure_first_attempt_failures() -> None:
    cells = [dataclasses.replace(c, first_fails=None) for c in _timeouts_retried(2.5)]
    assert repeat_retries(window(cells).total) == 0.0


# -- devices against their peers ------------------------------------------------------------------

def _terminals(t3_errors: dict[str, int], peer_errors: dict[str, int], attempts: int = 18) -> list[Cell]:
    cells = base_cells()
    for t in ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"):
        cells.append(Cell({**PALM, "terminal_id": t}, attempts, t3_errors if t == "T3" else peer_errors, 0.05))
    return cells


def test_a_few_not_registered_at_a_terminal_whose_peers_see_them_too_is_not_a_device_fault() -> None:
    history = healthy_history(_terminals({"PALM_PAY_NOT_REGISTERED": 1}, {"PALM_PAY_NOT_REGISTERED": 1}))
    noisy = _terminals({"PALM_PAY_NOT_REGISTERED": 3, "PALM_PAY_DAILY_LIMIT": 2}, {"PALM_PAY_NOT_REGISTERED": 1})
    snap = window(noisy)
    t3 = snap.segment(terminal_id="T3")
    assert t3 is not None and t3.z >= 4.0  # the normal score alone would have called it
    assert code_burst_z(t3, ["PALM_PAY_NOT_REGISTERED"], snap) < 4.0
    d = RULES.decide(snap, context(history))
    assert d.proposal.tool == "no_action" and "terminal_id" not in d.diagnosis.target


def test_the_same_codes_at_a_terminal_whose_peers_never_see_them_are_a_device_fault() -> None:
    history = healthy_history(_terminals({}, {}))
    snap = window(_terminals({"PALM_PAY_NOT_REGISTERED": 9}, {}))
    d = RULES.decide(snap, context(history))
    assert (d.diagnosis.category, d.diagnosis.target, d.proposal.tool) == (Category.NETWORK,
                                                                           {"terminal_id": "T3"}, "suppress_path")


def _without_t3(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.dims.get("terminal_id") != "T3"]


def _sparse_t3(snap: WindowSnapshot) -> WindowSnapshot:
    """T3 as a scanner seen too rarely to trust its baseline: judged against its peers' rate (0.107)."""
    t3 = snap.segment(terminal_id="T3")
    assert t3 is not None
    sparse = dataclasses.replace(t3, expected_failure_rate=0.107, baseline_failure_rate=0.05,
                                 z=binomial_z(t3.failures, t3.attempts, 0.107),
                                 excess_failures=t3.failures - t3.attempts * 0.107)
    return dataclasses.replace(snap, segments=tuple(sparse if s is t3 else s for s in snap.segments))


def test_a_scanner_seen_a_few_times_a_minute_is_judged_against_its_peers_not_held_to_a_cold_bar() -> None:
    # Session 12, met on development draws at 38-60 payments/min: a palm scanner sees a customer or two a
    # minute, so it never earns a trusted history of its own ("cold"), and a cold segment had to clear twice
    # the bar on the normal score: 4 of 5 failing in time-outs (z about 5) never did, and the scanner was
    # never named. A device is told apart by its peers (the exact tail of its codes beside theirs).
    snap = _sparse_t3(window(_terminals({"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 2}, {}, attempts=5)))
    sparse = snap.segment(terminal_id="T3")
    ctx = context(healthy_history(_without_t3(_terminals({}, {}, attempts=5))))
    assert cold(sparse, ctx) and 4.0 <= sparse.z < 8.0  # the shape, as met
    d = RULES.decide(snap, ctx)
    assert (d.diagnosis.category, d.diagnosis.target, d.proposal.tool) == (Category.NETWORK,
                                                                           {"terminal_id": "T3"}, "suppress_path")


def test_a_cold_terminals_codes_its_peers_see_as_often_are_not_a_device_fault() -> None:
    # The other side of the peer test: the same 4 of 5 when every scanner times out now and then.
    snap = _sparse_t3(window(_terminals({"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 2}, {"GATEWAY_TIMEOUT": 2},
                                        attempts=5)))
    d = RULES.decide(snap, context(healthy_history(_without_t3(_terminals({}, {"GATEWAY_TIMEOUT": 2}, attempts=5)))))
    assert "terminal_id" not in d.diagnosis.target, d.diagnosis.summary


def test_a_cold_kiosks_time_outs_its_route_shows_beyond_it_are_not_a_device_fault() -> None:
    # Session 12, met on a development draw at 77 payments/min: a scheme's link to an acquirer timing out,
    # a kiosk on that acquirer 4 of 4 in time-outs that minute. Judged by its peers alone it was "a device
    # fault" (suppress the kiosk); the acquirer's other traffic timing out too says the time-outs come from
    # behind the device.
    now = fail(_terminals({"GATEWAY_TIMEOUT": 2, "SYSTEM_ERROR": 2}, {}, attempts=5),
               {"route": "rail", "method": "payshap"},
               0.03, {"GATEWAY_TIMEOUT": 0.5, "NETWORK_ERROR": 0.5})  # the rail's own time-outs: not yet a finding
    snap = _sparse_t3(window(now))
    t3 = snap.segment(terminal_id="T3")
    assert t3 is not None and code_burst_z(t3, NETWORK_CODES, snap) >= 4.0  # its peers alone would name it
    d = RULES.decide(snap, context(healthy_history(_without_t3(_terminals({}, {}, attempts=5)))))
    assert "terminal_id" not in d.diagnosis.target, d.diagnosis.summary


def test_a_shop_tills_time_outs_are_its_acquirers_when_the_acquirer_times_out_for_others_too() -> None:
    # Session 12, met on development draws (route ramps at 160-500 payments/min, a scheme's link, an
    # acquirer's outage): the busiest till on a failing acquirer shows the time-outs first, 15 of 45, while
    # the acquirer's other 400 attempts time out 9 times (never otherwise) and the acquirer as a whole is not
    # yet significant. "Suppress the till" was the proposal; the time-outs come from behind it.
    cells = network_cells(BANKS, ROUTES, METHODS, 1000, ISSUERS, decline_rate=0.12)
    till = {"bank": "ABSA", "method": "card", "route": "psp_a", "issuer": "VISA", "terminal_id": "till 1"}
    history = healthy_history([*cells, Cell(till, 45, {"INSUFFICIENT_FUNDS": 5}, 0.12)], 8)
    now = fail(cells, {"route": "psp_a"}, 0.0225, {"GATEWAY_TIMEOUT": 0.5, "NETWORK_ERROR": 0.5})
    now.append(Cell(till, 45, {"GATEWAY_TIMEOUT": 5, "SYSTEM_ERROR": 4, "NETWORK_ERROR": 2, "INSUFFICIENT_FUNDS": 4},
                    0.12))
    snap = window(now)
    route, pos = snap.segment(route="psp_a"), snap.segment(terminal_id="till 1")
    assert route is not None and pos is not None and route.z < 4.0 <= pos.z  # the shape, as met
    d = RULES.decide(snap, context(history))
    assert d.diagnosis.target == {"route": "psp_a"}, d.diagnosis.summary
    assert d.proposal.target == {"route": "psp_a"}


def test_spoofs_are_blamed_on_the_device_even_when_a_bank_route_pair_fits_better() -> None:
    # T3 serves two banks; its spoofs at FNB fill FNB x rail, which then fits better than T3 itself.
    cells = base_cells()
    cells += [Cell({**PALM, "terminal_id": "T1"}, 20, {}, 0.05),
              Cell({**PALM, "bank": "ABSA", "terminal_id": "T2"}, 20, {}, 0.05)]
    cells += [Cell({**PALM, "terminal_id": "T3"}, 4, {"PALM_PAY_SPOOF_DETECTED": 4}, 0.05),
              Cell({**PALM, "bank": "ABSA", "terminal_id": "T3"}, 3, {"PALM_PAY_SPOOF_DETECTED": 1}, 0.05)]
    history = healthy_history([c if c.dims.get("terminal_id") != "T3" else dataclasses.replace(c, errors={})
                               for c in cells])
    d = RULES.decide(window(cells), context(history))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.SECURITY, {"terminal_id": "T3"})


def test_a_terminal_failing_its_few_customers_with_time_outs_its_peers_never_see_is_a_device_fault() -> None:
    # Five of six payments at one scanner time out: far under the 8 excess failures a segment needs, as
    # material as five misreads (a device fails every customer who walks up to it).
    history = healthy_history(_terminals({}, {}, attempts=6))
    snap = window(_terminals({"SYSTEM_ERROR": 3, "GATEWAY_TIMEOUT": 2}, {}, attempts=6))
    t3 = snap.segment(terminal_id="T3")
    assert t3 is not None and t3.excess_failures < 8
    d = RULES.decide(snap, context(history))
    assert (d.diagnosis.category, d.diagnosis.target, d.proposal.tool) == (Category.NETWORK,
                                                                           {"terminal_id": "T3"}, "suppress_path")
    # Time-outs may be the route behind the device (unlike misreads): in its first window a human confirms;
    # found again in the next, it may run.
    assert any(n.startswith("hold:") for n in d.notes) and d.diagnosis.confidence < 0.8
    again = RULES.decide(snap, context(history, previous=d.diagnosis))
    assert again.proposal.tool == "suppress_path" and not any(n.startswith("hold:") for n in again.notes)


def test_time_outs_at_a_terminal_whose_route_fails_everywhere_are_the_route_not_the_device() -> None:
    # Guard (passes before the lower bar too): time-outs also come from the route behind a device. When
    # the route fails for its other traffic as well, the device's share of it does not make it the cause.
    history = healthy_history(_terminals({}, {}, attempts=6))
    cells = fail(_terminals({}, {}, attempts=6), {"route": "rail"}, 0.8, {"GATEWAY_TIMEOUT": 1.0})
    d = RULES.decide(window(cells), context(history))
    assert d.diagnosis.target.get("route") == "rail" and "terminal_id" not in d.diagnosis.target


# -- pooled evidence ----------------------------------------------------------------------------

def test_pooling_windows_that_each_trusted_their_baseline_keeps_the_trust() -> None:
    snaps = healthy_history(fail(base_cells(), {"bank": "FNB"}, 0.1, {"BANK_TIMEOUT": 1.0}), n=3)
    merged = pool(s.segment(bank="FNB") for s in snaps)
    assert merged is not None and merged.baseline_failure_rate == pytest.approx(merged.expected_failure_rate)
    cold = window(base_cells(), baseline=False).segment(bank="FNB")
    mixed = pool([*(s.segment(bank="FNB") for s in snaps), cold])
    assert mixed is not None and mixed.baseline_failure_rate != pytest.approx(mixed.expected_failure_rate)


def test_a_thin_segment_does_not_pool_its_share_of_a_platform_incident() -> None:
    base = [c for c in base_cells()] + [Cell({**PALM, "terminal_id": t}, 40, {}, 0.03) for t in ("T1", "T2", "T4")]

    def thin(k: int) -> list[Cell]:
        return base + [Cell({**PALM, "terminal_id": "T3"}, 3, {"PALM_PAY_NOT_REGISTERED": k}, 0.03)]

    def outage(k: int) -> list[Cell]:
        return fail(thin(k), {}, 0.4, {"SYSTEM_ERROR": 1.0})

    # The same thin failures, first after quiet windows (pooled: a device), then after a platform outage.
    quiet = healthy_history(thin(0), n=6) + tuple(window(thin(2), end=END - 60.0 * i) for i in (3, 2, 1))
    assert RULES.decide(window(thin(3)), context(quiet)).diagnosis.target == {"terminal_id": "T3"}
    loud = healthy_history(thin(0), n=6) + tuple(window(outage(2), end=END - 60.0 * i) for i in (3, 2, 1))
    assert loud[-1].total.z >= 4.0
    d = RULES.decide(window(thin(3)), context(loud))
    assert d.diagnosis.target != {"terminal_id": "T3"} and not any("pooled" in e for e in d.diagnosis.evidence)


def _mastercard_on_r1(bank_a_on_r1: tuple[int, int], b_declines: int) -> list[Cell]:
    """Bank A issues Mastercard only; bank B both schemes; C Visa. A handful of attempts a minute."""
    n, k = bank_a_on_r1
    return [Cell({"bank": "A", "method": "card", "route": "r1", "issuer": "MC"}, n, {"BANK_TIMEOUT": k} if k else {}),
            Cell({"bank": "A", "method": "card", "route": "r2", "issuer": "MC"}, 2),
            Cell({"bank": "B", "method": "card", "route": "r1", "issuer": "MC"}, 3,
                 {"INSUFFICIENT_FUNDS": b_declines} if b_declines else {}),
            Cell({"bank": "B", "method": "card", "route": "r1", "issuer": "VISA"}, 2),
            Cell({"bank": "B", "method": "card", "route": "r2", "issuer": "VISA"}, 4),
            Cell({"bank": "C", "method": "card", "route": "r1", "issuer": "VISA"}, 2),
            Cell({"bank": "C", "method": "card", "route": "r2", "issuer": "VISA"}, 4)]


def test_pooled_evidence_reads_every_segment_over_the_same_windows() -> None:
    # Bank A's cards time out on acquirer r1: 7 of its 8 attempts in four minutes, too few to be a candidate
    # alone; Mastercard on r1 (A's cards and B's, a few declines among B's) clears the bar pooled. Its
    # time-outs are all A's once A's attempts are added up over the same four minutes, not the last one alone.
    quiet = tuple(window(_mastercard_on_r1((2, 0), 0), end=END - 60.0 * i) for i in range(9, 3, -1))
    failing = tuple(window(_mastercard_on_r1(a, d), end=END - 60.0 * i)
                    for i, (a, d) in zip((3, 2, 1), (((2, 2), 1), ((2, 1), 1), ((2, 2), 1)), strict=True))
    d = RULES.decide(window(_mastercard_on_r1((2, 2), 1)), context(quiet + failing))
    assert (d.diagnosis.category, d.diagnosis.target) == (Category.ISSUER, {"bank": "A", "route": "r1"})
    assert any("pooled over the last 4 windows" in e for e in d.diagnosis.evidence)


def test_an_earlier_window_is_pooled_with_the_reference_it_was_judged_on() -> None:
    # The history keeps the window's raw references; a thin segment's young baseline (30 %) is shrunk
    # toward the platform's before anything reads it. Pooled evidence adds up the shrunk ones.
    def cells(k: int) -> list[Cell]:
        return base_cells() + [Cell({**PALM, "terminal_id": "T3"}, 4, {"SYSTEM_ERROR": k} if k else {}, 0.3)]

    history = healthy_history(cells(0), n=6) + tuple(window(cells(3), end=END - 60.0 * i) for i in (2, 1))
    ctx = context(history)
    now = prepared(window(cells(3)), ctx)
    terminal = next(c.seg for c in RULES.pooled_ranked(now, ctx)[0] if c.seg.target == {"terminal_id": "T3"})
    judged = [now.segment(terminal_id="T3")] + [prepared(h, as_of(h, ctx)).segment(terminal_id="T3")
                                                for h in history[-2:]]
    assert terminal.attempts == 12 and all(s is not None for s in judged)
    assert terminal.expected_failure_rate == pytest.approx(sum(s.expected_failure_rate for s in judged) / 3)
    assert terminal.expected_failure_rate < 0.2  # not the raw 30 % the history keeps


def _schemes_on_r1(visa_failing: int, mc_failing: int) -> list[Cell]:
    """Route r1 carries 16 VISA and 4 Mastercard attempts a minute (two banks), r2 16 of each."""
    out = []
    for bank in ("A", "B"):
        out += [Cell({"bank": bank, "method": "card", "route": "r1", "issuer": "VISA"}, 8,
                     {"GATEWAY_TIMEOUT": visa_failing // 2} if visa_failing else {}),
                Cell({"bank": bank, "method": "card", "route": "r1", "issuer": "MC"}, 2,
                     {"NETWORK_ERROR": mc_failing // 2} if mc_failing else {}),
                Cell({"bank": bank, "method": "card", "route": "r2", "issuer": "VISA"}, 8),
                Cell({"bank": bank, "method": "card", "route": "r2", "issuer": "MC"}, 8)]
    return out


def test_a_rest_too_thin_to_read_in_one_window_is_read_over_the_windows_the_part_has_been_failing() -> None:
    # Met on development draw G1 (a route's ramp at 132 payments/min): 12 of the route's 16 VISA attempts
    # failed with time-outs and none of its 3 Mastercard ones, which had failed alike (3 of 8) a minute
    # before: "VISA's link to the route" was the reading. The route's other scheme, read over the two
    # minutes, shows the same fault: the route. Mastercard clean the minute before, VISA's link it stays.
    quiet = tuple(window(_schemes_on_r1(0, 0), end=END - 60.0 * i) for i in range(9, 1, -1))
    now = window(_schemes_on_r1(12, 0))
    spreading = RULES.decide(now, context(quiet + (window(_schemes_on_r1(4, 2), end=END - 60.0),)))
    assert (spreading.diagnosis.category, spreading.diagnosis.target) == (Category.NETWORK, {"route": "r1"})
    alone = RULES.decide(now, context(quiet + (window(_schemes_on_r1(4, 0), end=END - 60.0),)))
    assert alone.diagnosis.target == {"issuer": "VISA", "route": "r1"}


def _thin_route(r1_errors: dict[str, int]) -> list[Cell]:
    """Route r1 sees 10 attempts a minute beside a busy r3."""
    out = []
    for bank in ("A", "B"):
        out += [Cell({"bank": bank, "method": "card", "route": "r1", "issuer": "VISA"}, 5,
                     {k: v // 2 for k, v in r1_errors.items() if v // 2}),
                Cell({"bank": bank, "method": "card", "route": "r2", "issuer": "VISA"}, 5),
                Cell({"bank": bank, "method": "card", "route": "r3", "issuer": "VISA"}, 150, {"INSUFFICIENT_FUNDS": 6})]
    return out


def test_pooled_evidence_moves_no_traffic_on_its_own_once_the_window_shows_none_of_the_fault() -> None:
    # Met on fresh draw I8 (a ramp at 37 payments/min, by both this session's and the session-start rules):
    # a minute after the route recovered, its 12 attempts returned two declines and a bank time-out, and the
    # route's time-outs pooled over the four minutes before moved its traffic on the agent's own authority.
    quiet = tuple(window(_thin_route({}), end=END - 60.0 * i) for i in range(12, 4, -1))
    failing = tuple(window(_thin_route({"GATEWAY_TIMEOUT": 6}), end=END - 60.0 * i) for i in (4, 3, 2, 1))
    still = RULES.decide(window(_thin_route({"GATEWAY_TIMEOUT": 4})), context(quiet + failing))
    assert still.diagnosis.target == {"route": "r1"} and still.diagnosis.confidence >= 0.8
    assert not any(n.startswith("hold:") for n in still.notes)
    over = RULES.decide(window(_thin_route({"INSUFFICIENT_FUNDS": 2, "USER_DECLINED": 2})), context(quiet + failing))
    assert over.diagnosis.target == {"route": "r1"} and over.diagnosis.confidence <= 0.75
    assert any("shows none of its kind of failure" in n for n in over.notes)
