"""Truth tables of every guardrail (pure functions), and how evaluate() combines them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payops.guardrails import policies as P
from payops.guardrails.policies import GuardContext, PastAction, RouteHealth, evaluate
from payops.models import Category, Diagnosis, ProposedAction, VerdictKind
from payops.palmpay.spec import EscalationTrigger
from payops.tools.actions import ACTIONS, ActionSpec, NoActionArgs, Permission, validate_proposal
from payops.tools.permissions import permission_table

ALLOW, APPROVE, DENY = VerdictKind.ALLOW, VerdictKind.NEEDS_APPROVAL, VerdictKind.DENY
NOW = 10_000.0
TABLE = permission_table()  # the packaged spec


def ctx(**changes: object) -> GuardContext:
    base = GuardContext(
        now=NOW, permissions=TABLE, confidence_threshold=0.8, max_autonomous_volume=0.5, cooldown_seconds=300.0,
        max_autonomous_actions_per_hour=6, blast_radius=0.2,
        routes={"psp_a": RouteHealth(False, frozenset({"card"}), 0.9),
                "psp_b": RouteHealth(True, frozenset({"card"}), 0.02),
                "psp_c": RouteHealth(True, frozenset({"card", "palm"}), 0.01)},
        target_methods=frozenset({"card"}),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def diag(confidence: float = 0.95) -> Diagnosis:
    return Diagnosis(category=Category.NETWORK, summary="s", confidence=confidence)


def reroute(source: str = "psp_a", to: str = "psp_b", percent: float = 100.0) -> ProposedAction:
    return validate_proposal("reroute_traffic",
                             {"target": {"route": source}, "to_routes": {to: 1.0}, "percent": percent})


def palm(tool: str, link: str = "pp_link1") -> ProposedAction:
    return validate_proposal(tool, {"palm_pay_id": link, "reason": "fraud review"})


ALERT = validate_proposal("alert_ops", {"summary": "look"})
NOTHING = validate_proposal("no_action", {"reason": "fine"})
UNKNOWN = ProposedAction(tool="drop_database", target={}, args={})


# -- confidence: below 0.8 a human approves; doing nothing needs no confidence --------------------

@pytest.mark.parametrize("proposal, confidence, expected", [
    (reroute(), 0.79, APPROVE),
    (reroute(), 0.799, APPROVE),  # Diagnosis keeps 3 decimals (payops.models)
    (reroute(), 0.8, ALLOW),
    (reroute(), 0.95, ALLOW),
    (palm("suspend_palm_link"), 0.5, APPROVE),
    (NOTHING, 0.1, ALLOW),
])
def test_confidence(proposal: ProposedAction, confidence: float, expected: VerdictKind) -> None:
    result = P.confidence(proposal, diag(confidence), ctx())
    assert result.verdict is expected
    assert f"{confidence:.3f}"[:4] in result.reason or proposal.tool == "no_action"


# -- permission: autonomous / supervised run; human_required needs a human; unknown is denied --------

@pytest.mark.parametrize("proposal, table_changes, expected", [
    (reroute(), {}, ALLOW),
    (palm("suspend_palm_link"), {}, ALLOW),  # supervised (the spec's autonomy level)
    (palm("reactivate_palm_link"), {}, ALLOW),
    (palm("revoke_palm_link"), {}, APPROVE),  # palm_link_revoked: human_required in the spec
    (palm("suspend_palm_link"), {"default_level": Permission.HUMAN_REQUIRED}, APPROVE),
    (palm("revoke_palm_link"), {"by_outcome": {"palm_link_revoked": Permission.AUTONOMOUS}}, ALLOW),
    (palm("suspend_palm_link"), {"error": "spec unreadable"}, APPROVE),  # fail closed
    (reroute(), {"default_level": Permission.HUMAN_REQUIRED}, ALLOW),  # routing tools are not palm-pay operations
    (UNKNOWN, {}, DENY),
])
def test_permission(proposal: ProposedAction, table_changes: dict, expected: VerdictKind) -> None:
    table = replace(TABLE, **table_changes)
    assert P.permission(proposal, diag(), ctx(permissions=table)).verdict is expected


# -- blast radius above MAX_AUTONOMOUS_VOLUME needs a human -----------------------------------------

@pytest.mark.parametrize("proposal, radius, limit, expected", [
    (reroute(), 0.51, 0.5, APPROVE),
    (reroute(), 0.5, 0.5, ALLOW),
    (reroute(), 0.1, 0.05, APPROVE),
    (palm("suspend_palm_link"), 0.7, 0.5, APPROVE),
    (palm("suspend_palm_link"), 0.01, 0.5, ALLOW),
    (ALERT, 1.0, 0.5, ALLOW),  # informs only: touches no payment
    (NOTHING, 1.0, 0.0, ALLOW),
])
def test_blast_radius(proposal: ProposedAction, radius: float, limit: float, expected: VerdictKind) -> None:
    result = P.blast_radius(proposal, diag(), ctx(blast_radius=radius, max_autonomous_volume=limit))
    assert result.verdict is expected


# -- human checkpoints: terminal state transitions and sensitive fields ------------------------------

@pytest.mark.parametrize("proposal, table_changes, expected", [
    (palm("revoke_palm_link"), {}, APPROVE),  # revoked is a terminal state
    (palm("suspend_palm_link"), {}, ALLOW),
    (reroute(), {}, ALLOW),
    (palm("revoke_palm_link"), {"checkpoint_terminal": False}, ALLOW),
    (palm("suspend_palm_link"), {"terminal_states": frozenset({"revoked", "suspended"})}, APPROVE),
    (palm("suspend_palm_link"), {"unknown_checkpoints": ("before anything on Fridays",)}, APPROVE),
])
def test_human_checkpoints(proposal: ProposedAction, table_changes: dict, expected: VerdictKind) -> None:
    table = replace(TABLE, **table_changes)
    assert P.human_checkpoints(proposal, diag(), ctx(permissions=table)).verdict is expected


@pytest.mark.parametrize("checkpoint_on, modifies, expected", [(True, True, 1), (True, False, 0), (False, True, 0)])
def test_sensitive_field_checkpoint(checkpoint_on: bool, modifies: bool, expected: int) -> None:
    spec = ActionSpec("rotate_proxy", "changes a proxy", NoActionArgs, Permission.SUPERVISED, True, "", False,
                      modifies_sensitive=modifies)
    table = replace(TABLE, checkpoint_sensitive=checkpoint_on)
    assert len([c for c in table.checkpoints(spec) if "sensitive" in c]) == expected


# -- the spec's escalation triggers: error_rate > 5, consecutive_failures > 3 -----------------------

@pytest.mark.parametrize("proposal, metrics, expected", [
    (palm("suspend_palm_link"), {"error_rate": 5.0, "consecutive_failures": 3.0}, ALLOW),
    (palm("suspend_palm_link"), {"error_rate": 5.01, "consecutive_failures": 0.0}, APPROVE),
    (palm("suspend_palm_link"), {"error_rate": 0.0, "consecutive_failures": 4.0}, APPROVE),
    (palm("reactivate_palm_link"), {"error_rate": 60.0, "consecutive_failures": 9.0}, APPROVE),
    (palm("suspend_palm_link"), {"error_rate": 0.0}, APPROVE),  # consecutive_failures not measured: fail closed
    (reroute(), {"error_rate": 60.0, "consecutive_failures": 9.0}, ALLOW),  # not a palm-pay operation
])
def test_escalation_triggers(proposal: ProposedAction, metrics: dict, expected: VerdictKind) -> None:
    result = P.escalation_triggers(proposal, diag(), ctx(palm_metrics=metrics))
    assert result.verdict is expected
    if expected is APPROVE:
        assert "trigger fired" in result.reason


def test_triggers_come_from_the_table_not_the_code() -> None:
    table = replace(TABLE, triggers=(EscalationTrigger("error_rate", ">", 50.0, "error_rate > 50"),))
    result = P.escalation_triggers(palm("suspend_palm_link"), diag(),
                                   ctx(permissions=table, palm_metrics={"error_rate": 20.0}))
    assert result.verdict is ALLOW  # 20 > 5 would fire the packaged spec's trigger, not this one


# -- irreversible actions always need a human -----------------------------------------------------

@pytest.mark.parametrize("proposal, expected", [
    (palm("revoke_palm_link"), APPROVE),
    (palm("suspend_palm_link"), ALLOW),
    (reroute(), ALLOW),
    (ALERT, ALLOW),
])
def test_irreversible(proposal: ProposedAction, expected: VerdictKind) -> None:
    assert P.irreversible(proposal, diag(), ctx()).verdict is expected


def test_irreversible_follows_the_state_machine() -> None:
    # If the spec made "suspended" terminal, a suspension could not be undone any more.
    table = replace(TABLE, terminal_states=TABLE.terminal_states | {"suspended"})
    assert P.irreversible(palm("suspend_palm_link"), diag(), ctx(permissions=table)).verdict is APPROVE


# -- the same action on the same target is not applied twice -------------------------------------

@pytest.mark.parametrize("in_force, expected", [
    ((), ALLOW),
    ((PastAction("reroute_traffic", {"route": "psp_a"}, reroute().args, NOW - 60, True),), DENY),
    ((PastAction("reroute_traffic", {"route": "psp_a"}, reroute(percent=50).args, NOW - 60, True),), ALLOW),
    ((PastAction("reroute_traffic", {"route": "psp_z"}, reroute().args, NOW - 60, True),), ALLOW),
])
def test_already_in_force(in_force: tuple, expected: VerdictKind) -> None:
    assert P.already_in_force(reroute(), diag(), ctx(in_force=in_force)).verdict is expected


# -- anti-flapping: no reversal within the cooldown ---------------------------------------------------

def past(tool: str, target: dict, args: dict, age: float, autonomous: bool = True) -> PastAction:
    return PastAction(tool, target, args, NOW - age, autonomous)


AWAY_FROM_A = past("reroute_traffic", {"route": "psp_a"}, {"to_routes": {"psp_b": 1.0}}, 100)


@pytest.mark.parametrize("proposal, history, cooldown, expected", [
    (reroute("psp_b", "psp_a"), (AWAY_FROM_A,), 300.0, APPROVE),  # back into psp_a
    (reroute("psp_b", "psp_c"), (AWAY_FROM_A,), 300.0, APPROVE),  # away from psp_b, where traffic was just sent
    (reroute("psp_b", "psp_a"), (replace(AWAY_FROM_A, at=NOW - 300),), 300.0, ALLOW),  # cooldown over
    (reroute("psp_b", "psp_a"), (AWAY_FROM_A,), 60.0, ALLOW),  # shorter setting
    (reroute("psp_c", "psp_c2"), (AWAY_FROM_A,), 300.0, ALLOW),  # unrelated routes
    (palm("reactivate_palm_link"), (past("suspend_palm_link", {"palm_pay_id": "pp_link1"}, {}, 60),), 300.0, APPROVE),
    (palm("suspend_palm_link"), (past("reactivate_palm_link", {"palm_pay_id": "pp_link1"}, {}, 60),), 300.0, APPROVE),
    (palm("reactivate_palm_link"), (past("suspend_palm_link", {"palm_pay_id": "pp_other"}, {}, 60),), 300.0, ALLOW),
    (palm("reactivate_palm_link"), (past("suspend_palm_link", {"palm_pay_id": "pp_link1"}, {}, 400),), 300.0, ALLOW),
    (palm("suspend_palm_link"), (past("suspend_palm_link", {"palm_pay_id": "pp_link1"}, {}, 60),), 300.0, ALLOW),
])
def test_anti_flapping(proposal: ProposedAction, history: tuple, cooldown: float, expected: VerdictKind) -> None:
    result = P.anti_flapping(proposal, diag(), ctx(history=history, cooldown_seconds=cooldown))
    assert result.verdict is expected, result.reason


# -- a cap on autonomous actions per hour ------------------------------------------------------------

def actions(n: int, age: float = 600.0, autonomous: bool = True, tool: str = "suppress_path") -> tuple[PastAction, ...]:
    return tuple(past(tool, {"bank": f"B{i}"}, {}, age, autonomous) for i in range(n))


@pytest.mark.parametrize("proposal, history, cap, expected", [
    (reroute(), actions(5), 6, ALLOW),
    (reroute(), actions(6), 6, APPROVE),
    (reroute(), actions(5) + actions(1, age=3600.0), 6, ALLOW),  # older than an hour
    (reroute(), actions(6, autonomous=False), 6, ALLOW),  # approved by humans: not counted
    (reroute(), actions(6, tool="alert_ops"), 6, ALLOW),  # alerts are not counted
    (palm("suspend_palm_link"), actions(2), 2, APPROVE),
    (ALERT, actions(9), 6, ALLOW),
    (reroute(), (), 0, APPROVE),  # cap 0: nothing autonomous
])
def test_action_rate(proposal: ProposedAction, history: tuple, cap: int, expected: VerdictKind) -> None:
    context = ctx(history=history, max_autonomous_actions_per_hour=cap)
    assert P.action_rate(proposal, diag(), context).verdict is expected


# -- never reroute into an unhealthy or unsupported route ------------------------------------------

@pytest.mark.parametrize("proposal, methods, expected, why", [
    (reroute("psp_a", "psp_b"), {"card"}, ALLOW, "healthy"),
    (reroute("psp_b", "psp_a"), {"card"}, DENY, "unhealthy"),
    (reroute("psp_a", "psp_q"), {"card"}, DENY, "no traffic"),
    (reroute("psp_a", "psp_b"), {"card", "palm"}, DENY, "does not carry palm"),
    (reroute("psp_a", "psp_c"), {"card", "palm"}, ALLOW, "healthy"),
    (reroute("psp_b", "psp_b"), {"card"}, DENY, "moved away from"),
    (palm("suspend_palm_link"), {"card"}, ALLOW, "not a reroute"),
])
def test_safe_destination(proposal: ProposedAction, methods: set, expected: VerdictKind, why: str) -> None:
    result = P.safe_destination(proposal, diag(), ctx(target_methods=frozenset(methods)))
    assert result.verdict is expected
    assert why in result.reason


@pytest.mark.parametrize("moved_rate, dest_rate, expected", [
    (0.9, 0.02, ALLOW),  # psp_b fails 2%: a refuge
    (0.4, 0.45, DENY),  # every route fails alike: psp_b looks "healthy" among peers but is no refuge
    (0.4, 0.4, DENY),
    (0.02, 0.02, ALLOW),  # not a failure-driven move (latency): not this rule's business
    (0.0, 0.02, ALLOW),
    (None, 0.02, ALLOW),
])
def test_safe_destination_must_fail_less_than_the_moved_traffic(moved_rate: float | None, dest_rate: float,
                                                                expected: VerdictKind) -> None:
    routes = {**ctx().routes, "psp_b": RouteHealth(True, frozenset({"card"}), dest_rate)}
    result = P.safe_destination(reroute("psp_a", "psp_b"), diag(), ctx(target_failure_rate=moved_rate, routes=routes))
    assert result.verdict is expected, result.reason


@pytest.mark.parametrize("then, expected, why", [
    (RouteHealth(True, frozenset({"wallet"}), 0.03, quiet_for=60.0), APPROVE, "healthy when last seen: w (60 s ago)"),
    (RouteHealth(False, frozenset({"wallet"}), 0.6, quiet_for=60.0), DENY, "unhealthy"),
    (RouteHealth(True, frozenset({"card"}), 0.03, quiet_for=60.0), DENY, "does not carry wallet"),
])
def test_a_destination_empty_in_the_window_is_judged_as_last_seen_and_put_to_a_human(
        then: RouteHealth, expected: VerdictKind, why: str) -> None:
    # Session 13: a method misrouted away leaves its own route empty; "carried no traffic" denied sending it back.
    proposal = validate_proposal("reroute_traffic", {"target": {"method": "wallet", "route": "psp_a"},
                                                     "to_routes": {"w": 1.0}, "percent": 100.0})
    routes = {**ctx().routes, "w": then}
    result = P.safe_destination(proposal, diag(), ctx(routes=routes, target_methods=frozenset({"wallet"})))
    assert result.verdict is expected and why in result.reason, result.reason


# -- combining: most restrictive wins; every rule's verdict and reason is kept -------------------

def test_every_rule_reports_with_a_reason() -> None:
    verdict = evaluate(reroute(), diag(), ctx())
    assert [r.rule for r in verdict.results] == ["known_tool", "confidence", "permission", "blast_radius",
                                                 "human_checkpoint", "escalation_trigger", "irreversible",
                                                 "already_in_force", "anti_flapping", "action_rate",
                                                 "safe_destination", "past_harm", "human_said_no"]
    assert all(r.reason for r in verdict.results)
    assert verdict.verdict is ALLOW


@pytest.mark.parametrize("proposal, diagnosis, changes, expected", [
    (reroute(), diag(0.95), {}, ALLOW),
    (reroute(), diag(0.5), {}, APPROVE),  # one approve
    (reroute(), diag(0.5), {"blast_radius": 0.9}, APPROVE),  # two approves
    (reroute("psp_b", "psp_a"), diag(0.5), {}, DENY),  # approve + deny -> deny
    (palm("revoke_palm_link"), diag(0.99), {"palm_metrics": {"error_rate": 0.0, "consecutive_failures": 0.0}}, APPROVE),
    (ALERT, diag(0.1), {"blast_radius": 1.0}, ALLOW),  # alerting is always allowed
    (UNKNOWN, diag(0.99), {}, DENY),
])
def test_most_restrictive_wins(proposal: ProposedAction, diagnosis: Diagnosis, changes: dict,
                               expected: VerdictKind) -> None:
    assert evaluate(proposal, diagnosis, ctx(**changes)).verdict is expected


def test_escalating_verdict_lists_each_reason() -> None:
    verdict = evaluate(palm("revoke_palm_link"), diag(0.5),
                       ctx(palm_metrics={"error_rate": 9.0, "consecutive_failures": 0.0}))
    blocking = {r.rule for r in verdict.results if r.verdict is not ALLOW}
    assert blocking == {"confidence", "permission", "human_checkpoint", "escalation_trigger", "irreversible"}


@settings(max_examples=40, deadline=None)
@given(tool=st.sampled_from(sorted(ACTIONS)), confidence=st.floats(0, 1), radius=st.floats(0, 1),
       error_rate=st.floats(0, 100), streak=st.integers(0, 10), recent=st.integers(0, 10))
def test_verdict_is_the_most_severe_result(tool: str, confidence: float, radius: float, error_rate: float,
                                           streak: int, recent: int) -> None:
    args = {"reroute_traffic": {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}},
            "adjust_retry_policy": {"max_attempts": 2}, "suppress_path": {"target": {"bank": "FNB"}},
            "alert_ops": {"summary": "x"}, "no_action": {},
            "rollback_action": {"action_id": "d-1", "reason": "cause cleared"}}.get(tool, {"palm_pay_id": "pp_link1"})
    proposal = validate_proposal(tool, args)
    metrics = {"error_rate": error_rate, "consecutive_failures": streak}
    verdict = evaluate(proposal, diag(confidence), ctx(blast_radius=radius, history=actions(recent),
                                                       palm_metrics=metrics))
    worst = max((r.verdict for r in verdict.results), key=lambda v: v.severity)
    assert verdict.verdict is worst
    if tool in P.HARMLESS_TOOLS:
        assert verdict.verdict is ALLOW
    if confidence < 0.8 and tool != "no_action" and tool not in P.HARMLESS_TOOLS:
        assert verdict.verdict is not ALLOW


# -- blast-radius estimates by declared scope (guardrails.metrics) ---------------------------------

def snapshot_of(tmp_path, failing: dict | None = None) -> object:
    from guardrails_helpers import START, write_events

    from payops.signals.sources import open_jsonl
    from payops.signals.window import EventWindow

    path = write_events(tmp_path / "e.jsonl", minutes=1, per_minute=100, palm_share=0.1, failing=failing)
    window = EventWindow(60.0)
    window.add(open_jsonl(str(path)).read_until(START + 60))
    return window.snapshot(START + 60)


def test_blast_radius_estimates(tmp_path) -> None:
    from payops.guardrails.metrics import action_blast_radius, palm_metrics

    snap = snapshot_of(tmp_path)
    assert snap.total.attempts == 100
    half = reroute("psp_a", "psp_b", percent=50)
    assert action_blast_radius(ACTIONS["reroute_traffic"], half, snap) == pytest.approx(0.5 * 0.5)  # psp_a carries half
    everything = validate_proposal("adjust_retry_policy", {"max_attempts": 2})
    assert action_blast_radius(ACTIONS["adjust_retry_policy"], everything, snap) == 1.0
    suspend = palm("suspend_palm_link")
    assert action_blast_radius(ACTIONS["suspend_palm_link"], suspend, snap, link_attempts=3) == pytest.approx(0.03)
    # bounded by palm's share
    assert action_blast_radius(ACTIONS["suspend_palm_link"], suspend, snap) == pytest.approx(0.1)
    assert action_blast_radius(ACTIONS["alert_ops"], ALERT, snap) == 0.0
    assert action_blast_radius(None, UNKNOWN, snap) == 1.0
    # error_rate: percent of palm attempts failing in the window (none fail here)
    assert palm_metrics(snap, consecutive_failures=2) == {"consecutive_failures": 2.0, "error_rate": 0.0}
    # every palm attempt rides psp_a here, and half of psp_a's attempts fail: error_rate 50 (> 5 fires)
    assert palm_metrics(snapshot_of(tmp_path, failing={"psp_a": 0.5}))["error_rate"] == pytest.approx(50.0)


def test_past_harm_forces_approval_and_names_the_decision() -> None:
    from payops.guardrails.policies import GuardContext, evaluate, past_harm
    from payops.models import Category, Diagnosis, ProposedAction, VerdictKind
    from payops.tools.permissions import permission_table

    proposal = ProposedAction(tool="adjust_retry_policy", target={},
                              args={"max_attempts": 5, "backoff_ms": 0.0, "ttl_seconds": 60.0})
    diagnosis = Diagnosis(category=Category.CONFIG, summary="storm", confidence=0.95)
    clean = GuardContext(now=0.0, permissions=permission_table())
    harmed = GuardContext(now=0.0, permissions=permission_table(), harmed_before=("d-1234",))
    assert past_harm(proposal, diagnosis, clean).verdict is VerdictKind.ALLOW
    result = past_harm(proposal, diagnosis, harmed)
    assert result.verdict is VerdictKind.NEEDS_APPROVAL and "d-1234" in result.reason
    assert evaluate(proposal, diagnosis, harmed).verdict is VerdictKind.NEEDS_APPROVAL


def test_a_latency_reroute_is_not_denied_for_ordinary_decline_noise() -> None:
    # Slow traffic barely fails (4% declines); a healthy destination failing 4.5% is still a refuge.
    result = P.safe_destination(reroute("psp_a", "psp_b"), diag(), ctx(target_failure_rate=0.04))
    assert result.verdict is ALLOW, result.reason


def test_a_move_an_operator_rejected_is_denied_on_the_same_evidence_and_asked_again_when_it_grew() -> None:
    said_no = ctx(rejected={("reroute_traffic", "route=psp_a"): P.Rejection("d-0123456789abcdef", 0.9, NOW + 1800)})
    same = evaluate(reroute(), diag(0.92), said_no)  # within REASK_CONFIDENCE_GAIN of the rejected 0.90
    assert same.verdict is VerdictKind.DENY
    reason = next(r.reason for r in same.results if r.rule == "human_said_no")
    assert "d-0123456789abcdef" in reason and "not proposed again" in reason and "UTC" in reason
    grew = evaluate(reroute(), diag(0.97), said_no)
    assert grew.verdict is VerdictKind.NEEDS_APPROVAL
    assert "asked again" in next(r.reason for r in grew.results if r.rule == "human_said_no")
    assert evaluate(reroute(source="psp_c"), diag(), said_no).verdict is VerdictKind.ALLOW  # another target
    assert evaluate(reroute(), diag(), ctx()).verdict is VerdictKind.ALLOW
