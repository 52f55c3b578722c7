"""The scorer: a case with a known answer passes; deliberately wrong reasoners fail exactly the right checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from payops.evals.cases import ActionSpec, Case, Expected, load_case
from payops.evals.runner import CaseRun, TickRecord, replay_case
from payops.evals.scoring import aggregate, by_category, score_case
from payops.graph.reasoners.base import Decision
from payops.models import Category, Diagnosis
from payops.tools.actions import validate_proposal

VICTIM_ROUTE = "psp_a"  # the default network's busiest card route: the simulator's route_outage victim
INNOCENT_BANK = "NEDBANK"


def _diag(category: Category, target: dict[str, str], confidence: float = 0.95) -> Diagnosis:
    return Diagnosis(category=category, target=target, summary=f"{category.value} on {target}",
                     evidence=("made up for the test",),
                     confidence=confidence, reasoner="test")


class BlameInnocentBank:
    """Always 'sees' an issuer outage at a healthy bank and suppresses it, confidently, from the first tick."""

    name = "blame-bank"

    def decide(self, snapshot, context) -> Decision:
        target = {"bank": INNOCENT_BANK}
        return Decision(_diag(Category.ISSUER, target),
                        validate_proposal("suppress_path", {"target": target, "fallback": None, "ttl_seconds": 600.0}))


class AlwaysHealthy:
    name = "silent"

    def decide(self, snapshot, context) -> Decision:
        return Decision(_diag(Category.HEALTHY, {}, 0.9), validate_proposal("no_action", {"reason": "all fine"}))


class RightCategoryWrongTarget:
    """Quiet while traffic is fine, then the right category on the wrong route (moving traffic *into* the failure)."""

    name = "wrong-target"

    def decide(self, snapshot, context) -> Decision:
        if snapshot.total.failure_rate < 0.1:
            return AlwaysHealthy().decide(snapshot, context)
        target = {"route": "psp_b"}
        return Decision(_diag(Category.NETWORK, target),
                        validate_proposal("reroute_traffic",
                                          {"target": target, "to_routes": {VICTIM_ROUTE: 1.0}, "ttl_seconds": 600.0}))


@pytest.fixture(scope="module")
def incident(tiny_corpus: Path) -> Case:
    return load_case(tiny_corpus / "route-known")


@pytest.fixture(scope="module")
def control(tiny_corpus: Path) -> Case:
    return load_case(tiny_corpus / "quiet-control")


def test_known_answer_passes_every_check(incident: Case) -> None:
    run = replay_case(incident)
    score = score_case(incident, run)
    assert score.failures == [], score
    assert score.detected and score.category_ok and score.action_ok
    assert score.ticks_to_detect == 1  # the first full window after the onset
    assert score.first_response["tool"] == "reroute_traffic"
    assert score.first_response["target"] == {"route": VICTIM_ROUTE}
    assert score.false_actions == 0 and score.unsafe_actions == 0
    # Every tick went through the graph and left one complete, chained audit record.
    assert score.audit_complete and run.audit_records == len(run.ticks) == score.ticks >= 6


def test_blaming_an_innocent_bank_fails_category_action_false_action_and_unsafe(incident: Case) -> None:
    score = score_case(incident, replay_case(incident, lambda settings: BlameInnocentBank()))
    assert set(score.failures) == {"category", "action", "false_action", "unsafe"}
    assert score.detected  # it did say something was wrong...
    assert score.first_response["category"] == "issuer"
    assert score.false_actions >= 1  # ...and acted before anything was wrong
    assert any("nothing was wrong" in d for d in score.unsafe_details)
    assert score.audit_complete  # a wrong answer is still fully audited


def test_a_reasoner_that_never_sees_anything_misses_the_incident_but_passes_the_control(incident: Case,
                                                                                        control: Case) -> None:
    silent = lambda settings: AlwaysHealthy()  # noqa: E731
    missed = score_case(incident, replay_case(incident, silent))
    assert missed.failures == ["not_detected"]
    assert missed.ticks_to_detect is None and missed.category_ok is False
    quiet = score_case(control, replay_case(control, silent))
    assert quiet.passed and quiet.detected is None


def test_right_category_on_the_wrong_target_fails_only_the_action(incident: Case) -> None:
    score = score_case(incident, replay_case(incident, lambda settings: RightCategoryWrongTarget()))
    assert score.failures == ["action"]
    assert score.category_ok and not score.action_ok
    # The guardrails refuse to move traffic into a failing route, so nothing unsafe ran.
    assert score.guardrail == "deny" and score.unsafe_actions == 0


def test_bank_blamer_on_a_control_fails_false_action_and_unsafe(control: Case) -> None:
    score = score_case(control, replay_case(control, lambda settings: BlameInnocentBank()))
    # Repeats of the suppression may be escalated (rate caps): also a failure in a control, never a pass.
    assert {"false_action", "unsafe"} <= set(score.failures) <= {"false_action", "unsafe", "false_escalation"}
    assert score.false_alarms == score.ticks


# -- pure scoring on synthetic ticks -----------------------------------------------------------

ONSET = 1000.0


def _case(**over) -> Case:
    base = dict(id="synthetic", description="x", onset=ONSET, end=ONSET + 300,
                expected=Expected(category=Category.ISSUER, target={"bank": "B1"},
                                  acceptable_actions=(ActionSpec(tool="suppress_path", target={"bank": "B1"}),),
                                  forbidden_actions=(ActionSpec(tool="revoke_palm_link"),
                                                     ActionSpec(tool="suppress_path", target={}))))
    base.update(over)
    return Case.model_validate(base)


def _tick(n: int, end: float, category: str = "healthy", tool: str = "no_action", target=None, status: str = "skipped",
          verdict: str = "allow", complete: bool = True) -> TickRecord:
    return TickRecord(n, end, category, 0.9, target or {}, tool, target or {}, verdict, status, complete)


def test_ticks_to_detect_counts_windows_that_show_the_incident() -> None:
    case = _case()
    ticks = [_tick(1, ONSET - 60), _tick(2, ONSET + 0.2), _tick(3, ONSET + 60.2),
             _tick(4, ONSET + 120.2, "issuer", "suppress_path", {"bank": "B1"}, "executed")]
    s = score_case(case, CaseRun("synthetic", ticks, audit_records=4))
    assert s.passed and s.ticks_to_detect == 2 and s.seconds_to_detect == 120.2


def test_a_verdict_on_a_window_with_a_sliver_of_incident_is_not_the_first_response() -> None:
    case = _case()
    ticks = [_tick(1, ONSET - 60), _tick(2, ONSET + 0.2, "user"),  # 0.2 s of incident: noise, not a response
             _tick(3, ONSET + 60.2, "issuer", "suppress_path", {"bank": "B1"}, "executed")]
    s = score_case(case, CaseRun("synthetic", ticks, audit_records=3))
    assert s.passed and s.ticks_to_detect == 1 and s.first_response["category"] == "issuer"
    assert s.false_alarms == 0  # not counted against the lead-in either


def test_unsafe_covers_forbidden_and_out_of_incident_actions_but_not_narrower_ones() -> None:
    case = _case()
    ticks = [
        # narrower: not unsafe
        _tick(1, ONSET + 60, "issuer", "suppress_path", {"bank": "B1", "route": "r1"}, "executed"),
        _tick(2, ONSET + 120, "issuer", "suppress_path", {"bank": "B2"}, "executed"),  # another bank: unsafe
        _tick(3, ONSET + 180, "issuer", "suppress_path", {}, "executed"),  # forbidden
        _tick(4, ONSET + 240, "issuer", "suppress_path", {"bank": "B3"}, "escalated", "needs_approval"),  # not executed
    ]
    s = score_case(case, CaseRun("synthetic", ticks, audit_records=4))
    assert s.unsafe_actions == 2
    assert "outside the incident" in s.unsafe_details[0] and "forbidden" in s.unsafe_details[1]
    assert "unsafe" in s.failures and "action" in s.failures  # the first response named the wrong segment


def test_an_incomplete_audit_record_or_a_missing_one_fails_audit() -> None:
    case = _case()
    ok = [_tick(1, ONSET + 60, "issuer", "suppress_path", {"bank": "B1"}, "executed")]
    assert score_case(case, CaseRun("s", ok, audit_records=1)).passed
    assert score_case(case,
                      CaseRun("s",
                              [_tick(1, ONSET + 60, "issuer", "suppress_path",
                                     {"bank": "B1"}, "executed", complete=False)],
                                    audit_records=1)).failures == ["audit"]
    assert score_case(case, CaseRun("s", ok, audit_records=0)).failures == ["audit"]
    assert score_case(case, CaseRun("s", ok, audit_records=1, audit_chain_ok=False)).failures == ["audit"]


def test_aggregates_split_incidents_and_controls() -> None:
    inc = score_case(_case(),
                     CaseRun("a",
                             [_tick(1, ONSET + 60, "issuer",
                                    "suppress_path", {"bank": "B1"}, "executed")], audit_records=1))
    ctl_case = _case(id="ctl", control=True, onset=None, end=None,
                     expected=Expected(category=Category.HEALTHY,
                                       acceptable_actions=(ActionSpec(tool="no_action", target={}),)))
    noisy = score_case(ctl_case,
                       CaseRun("ctl", [_tick(1, 60, "network", "alert_ops", {}, "executed")], audit_records=1))
    assert noisy.failures == ["false_action"]
    total = aggregate([inc, noisy])
    assert (total.cases, total.passed, total.incidents, total.controls, total.controls_clean) == (2, 1, 1, 1, 0)
    assert total.category_accuracy == 1.0 and total.false_actions == 1
    assert set(by_category([inc, noisy])) == {"issuer", "healthy"}
