"""Shared set-up for the memory tests: a deterministic day of incidents in a real state directory."""

from __future__ import annotations

from pathlib import Path

from payops.graph.approval import resume
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.guardrails.notify import ListNotifier
from payops.settings import Settings
from payops.signals.simulator import Fault, Scenario, Simulator, build_scenario, default_network
from payops.signals.sources import SimulatorSource
from payops.tools.control_plane import SimulatedControlPlane

OPS_DAY_TICKS = 36
APPROVER = "operator:d0d0d0d0d0d0"  # the duty manager's operator key (approvers are authenticated)
START_TS = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC


def ops_day_scenario() -> Scenario:
    """A route outage, a terminal's scanner failing, then FNB going down (names are data)."""
    net = default_network()
    route = build_scenario("route_outage", net, lead_in=300.0, duration=300.0)
    scanner = build_scenario("palm_scanner_fault", net, lead_in=900.0, duration=300.0)
    fnb = Fault({"bank": "FNB"}, 1500.0, 1800.0, 0.7, {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4})
    return Scenario("ops_day", "route outage, scanner fault, FNB down", faults=(*route.faults, *scanner.faults, fnb))


def run_ops_day(state_dir: Path, seed: int = 11, ticks: int = OPS_DAY_TICKS, approve: bool = True) -> list[dict]:
    """Runs the day into `state_dir` (audit.db, lessons.db, approvals.db) and returns every tick's state.

    An operator approves every escalation straight away; the agent applies it on its next tick.
    """
    control_plane = SimulatedControlPlane()
    sim = Simulator(ops_day_scenario(), default_network(), seed=seed, start_ts=START_TS, policy=control_plane)
    services = build_services(Settings(state_dir=state_dir, deployment="ops-day"), source=SimulatorSource(sim),
                              control_plane=control_plane, notifier=ListNotifier())
    services.clock = lambda: START_TS + 3600.0  # approvals are stamped in wall time: keep the records reproducible
    agent = Agent(services)
    states = []
    for _ in range(ticks):
        state = agent.tick().state
        states.append(state)
        if approve and state["execution"]["status"] == "escalated":
            resume(services, state["decision_id"], {"approved": True, "approver": APPROVER, "note": "go ahead"})
    services.audit.close()
    return states


def run_escalating_day(state_dir: Path, seed: int = 11, ticks: int = OPS_DAY_TICKS) -> list[dict]:
    """The same day with a stricter confidence threshold (0.95): every proposal needs a human. The first
    escalation is approved at once; the others stay pending — a run the chat's question set reads."""
    control_plane = SimulatedControlPlane()
    sim = Simulator(ops_day_scenario(), default_network(), seed=seed, start_ts=START_TS, policy=control_plane)
    services = build_services(Settings(state_dir=state_dir, deployment="ops-day", confidence_threshold=0.95),
                              source=SimulatorSource(sim), control_plane=control_plane, notifier=ListNotifier())
    services.clock = lambda: START_TS + 3600.0
    agent = Agent.durable(services)
    states, approved = [], False
    for _ in range(ticks):
        state = agent.tick().state
        states.append(state)
        if not approved and state["execution"]["status"] == "escalated":
            resume(services, state["decision_id"], {"approved": True, "approver": APPROVER, "note": "go ahead"})
            approved = True
    services.audit.close()
    if services.approvals is not None:
        services.approvals.close()
    agent.checkpointer.conn.close()
    return states


# -- a small, hand-written audit trail: stable records for the chat and its cassettes ------------

DAY = 1_763_942_400.0  # 2025-11-24 00:00:00 UTC
IDS = {
    "healthy": "d-00000000000a0001",
    "reroute": "d-00000000000a0002",  # 10:05 reroute psp_a -> psp_b, autonomous, helped
    "suppress_t3": "d-00000000000a0003",  # 11:30 suppress terminal T3, autonomous, helped
    "alert_fnb": "d-00000000000a0004",  # 12:40 alert about FNB
    "suppress_fnb": "d-00000000000a0005",  # 12:45 suppress FNB, approved by ops-lead, harmed, rolled back
    "suppress_t5_yesterday": "d-00000000000a0006",  # yesterday 09:00 suppress T5: no effect
}


def _figures(attempts: int, failures: int, p95: float, windows: int = 1) -> dict:
    return {"attempts": attempts, "failures": failures,
            "failure_rate": round(failures / attempts, 4) if attempts else 0.0,
            "latency_p95_ms": p95, "attempts_per_payment": 1.05, "windows": windows}


def _decision(decision_id: str, at: float, *, category: str, target: dict, summary: str, evidence: list[str], tool: str,
              ptarget: dict, args: dict, status: str, detail: str, attempts: int, failures: int, confidence: float,
              alternatives: list[str] = (), verdict: str = "allow", blocking: tuple = ()) -> dict:
    blocked = {rule for rule, _ in blocking}
    results = [{"rule": r, "verdict": "allow", "reason": f"{r} ok"}
               for r in ("known_tool", "confidence", "blast_radius") if r not in blocked]
    results += [{"rule": rule, "verdict": "needs_approval", "reason": reason} for rule, reason in blocking]
    return {
        "decision_id": decision_id, "tick": 1, "window_end": at,
        "snapshot": {"window_start": at - 60, "window_end": at, "attempts": attempts, "failures": failures,
                     "failure_rate": round(failures / attempts, 4), "latency_p95_ms": 900.0,
                     "attempts_per_payment": 1.05, "top_errors": {}, "bad_lines": 0, "late_events": 0},
        "diagnosis": {"category": category, "target": target, "summary": summary, "evidence": evidence,
                      "alternatives": list(alternatives), "confidence": confidence, "reasoner": "rules"},
        "proposal": {"tool": tool, "target": ptarget, "args": args, "rationale": ""},
        "verdict": {"verdict": verdict, "results": results, "blast_radius": 0.3},
        "execution": {"status": status, "detail": detail, "action_id": decision_id if status == "executed" else None},
        "approval": None, "lessons_consulted": [], "llm_calls": [], "housekeeping": [], "in_force": [],
        "track_record": None,
    }


def write_synthetic_trail(state_dir: Path) -> dict[str, str]:
    """Writes audit.db and lessons.db the way the agent does; returns the decision ids by name."""
    from payops.graph.services import sqlite_store
    from payops.memory.audit import AuditLog
    from payops.memory.lessons import Lesson, LessonStore

    state_dir.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(state_dir / "audit.db")
    lessons = LessonStore(sqlite_store(state_dir / "lessons.db"))
    h = 3600.0
    y = DAY - 24 * h

    def outcome(decision_id, at, tool, target, args, verdict, reasons, before, after, decided, status="executed",
                approver=None, rollback=None, sig=None, windows=3):
        audit.append(decision_id, "outcome", at, {
            "decision_id": decision_id, "verdict": verdict, "detail": "; ".join(reasons), "reasons": reasons,
            "tool": tool, "target": target, "args": args, "status": status, "approver": approver,
            "decided_at": decided, "applied_at": decided, "windows": windows, "before": before, "after": after,
            "expected": {}, "signature": sig, "rollback": rollback})
        lessons.put(Lesson(decision_id=decision_id, **sig, tool=tool, target=target, args=args, status=status,
                           approver=approver, verdict=verdict, reasons=reasons, before=before, after=after,
                           windows=windows, rolled_back=rollback is not None, created_at=decided, applied_at=decided,
                           concluded_at=at))

    # yesterday: suppressing terminal T5 changed nothing
    t5 = y + 9 * h
    audit.append(IDS["suppress_t5_yesterday"], "decision", t5, _decision(
        IDS["suppress_t5_yesterday"], t5, category="network", target={"terminal_id": "T5"},
        summary="Device fault at terminal_id=T5.", evidence=["terminal_id=T5: 9/12 failed (75.0%) vs expected 4.0%"],
        tool="suppress_path", ptarget={"terminal_id": "T5"}, args={"fallback": "card", "ttl_seconds": 900.0},
        status="executed", detail="suppressed terminal_id=T5; fallback offered: card", attempts=610, failures=40,
        confidence=0.86))
    outcome(IDS["suppress_t5_yesterday"], t5 + 180, "suppress_path", {"terminal_id": "T5"}, {"fallback": "card"},
            "no_effect", ["no significant change: platform failure rate 6.6% -> 6.4% (reference 4.0%)"],
            {"platform": _figures(610, 40, 900.0)}, {"platform": _figures(1830, 117, 910.0, 3)}, t5,
            sig={"category": "network", "target_key": "terminal_id=T5", "target_dims": "terminal_id",
                 "dominant_error": "PALM_PAY_NOT_REGISTERED", "error_codes": "PALM_PAY_NOT_REGISTERED",
                 "magnitude": "severe", "method_mix": "palm"})
    audit.append(IDS["healthy"], "decision", DAY + 10 * h, _decision(
        IDS["healthy"], DAY + 10 * h, category="healthy", target={}, summary="Traffic within normal bounds.",
        evidence=["all traffic: 24/600 failed (4.0%)"], tool="no_action", ptarget={},
        args={"reason": "traffic healthy"}, status="skipped", detail="traffic healthy", attempts=600, failures=24,
        confidence=0.9))
    rr = DAY + 10 * h + 300
    audit.append(IDS["reroute"], "decision", rr, _decision(
        IDS["reroute"], rr, category="network", target={"route": "psp_a"},
        summary="Route/processor failure on route=psp_a across banks.",
        evidence=["route=psp_a: 121/220 failed (55.0%) vs expected 4.0%; z=30.1; 112 excess failures",
                  "route=psp_a: errors GATEWAY_TIMEOUT 60%, NETWORK_ERROR 40%"],
        alternatives=["*: broader; explained by route=psp_a"], tool="reroute_traffic", ptarget={"route": "psp_a"},
        args={"to_routes": {"psp_b": 1.0}, "percent": 100.0, "ttl_seconds": 1800.0}, status="executed",
        detail="rerouted 100% of route=psp_a to psp_b:1 until ttl", attempts=600, failures=126, confidence=0.91))
    outcome(IDS["reroute"], rr + 180, "reroute_traffic", {"route": "psp_a"}, {"to_routes": {"psp_b": 1.0}}, "helped",
            ["platform failure rate fell 21.0% -> 4.2%, closing 93% of the gap to its reference 4.0%"],
            {"platform": _figures(600, 126, 9000.0), "target": _figures(220, 121, 24000.0)},
            {"platform": _figures(1800, 75, 700.0, 3), "target": _figures(0, 0, 0.0, 3)}, rr,
            sig={"category": "network", "target_key": "route=psp_a", "target_dims": "route",
                 "dominant_error": "GATEWAY_TIMEOUT", "error_codes": "GATEWAY_TIMEOUT,NETWORK_ERROR",
                 "magnitude": "major", "method_mix": "card"})
    t3 = DAY + 11 * h + 1800
    audit.append(IDS["suppress_t3"], "decision", t3, _decision(
        IDS["suppress_t3"], t3, category="network", target={"terminal_id": "T3"},
        summary="Device fault: palm scanner at terminal_id=T3 fails to read palms.",
        evidence=["terminal_id=T3: 34/40 failed (85.0%) vs expected 5.0%"], tool="suppress_path",
        ptarget={"terminal_id": "T3"}, args={"fallback": "card", "ttl_seconds": 1800.0}, status="executed",
        detail="suppressed terminal_id=T3; fallback offered: card", attempts=640, failures=60, confidence=0.88))
    outcome(IDS["suppress_t3"], t3 + 180, "suppress_path", {"terminal_id": "T3"}, {"fallback": "card"}, "helped",
            ["platform failure rate fell 9.4% -> 4.1%, closing all of the gap to its reference 4.5%"],
            {"platform": _figures(640, 60, 900.0)}, {"platform": _figures(1900, 78, 880.0, 3)}, t3,
            sig={"category": "network", "target_key": "terminal_id=T3", "target_dims": "terminal_id",
                 "dominant_error": "PALM_PAY_NOT_REGISTERED", "error_codes": "PALM_PAY_NOT_REGISTERED",
                 "magnitude": "severe", "method_mix": "palm"})
    al = DAY + 12 * h + 2400
    audit.append(IDS["alert_fnb"], "decision", al, _decision(
        IDS["alert_fnb"], al, category="issuer", target={"bank": "FNB"},
        summary="Issuer degradation: bank=FNB failing across routes.",
        evidence=["bank=FNB: 60/156 failed (38.5%) vs expected 4.0%"], tool="alert_ops", ptarget={"bank": "FNB"},
        args={"severity": "warning", "summary": "FNB degraded", "evidence": []}, status="executed",
        detail="ops alerted (warning)", attempts=600, failures=80, confidence=0.84))
    sf = DAY + 12 * h + 2700
    audit.append(IDS["suppress_fnb"], "decision", sf, _decision(
        IDS["suppress_fnb"], sf, category="issuer", target={"bank": "FNB"},
        summary="Issuer degradation: bank=FNB failing across routes.",
        evidence=["bank=FNB: 101/156 failed (64.7%) vs expected 4.0%"], tool="suppress_path", ptarget={"bank": "FNB"},
        args={"fallback": None, "ttl_seconds": 1800.0}, status="escalated",
        detail="human approval required: confidence 0.78 < threshold 0.80",
        attempts=600, failures=118, confidence=0.78, verdict="needs_approval",
        blocking=(("confidence", "confidence 0.780 < threshold 0.80"),)))
    audit.append(IDS["suppress_fnb"], "approval", sf + 120, {"decision_id": IDS["suppress_fnb"], "status": "approved",
                                                            "approver": "ops-lead", "note": "try it", "recorded": True})
    audit.append(IDS["suppress_fnb"], "approved_action", sf + 180, {
        "decision_id": IDS["suppress_fnb"], "tool": "suppress_path", "target": {"bank": "FNB"},
        "args": {"fallback": None}, "approver": "ops-lead", "note": "try it",
        "execution": {"status": "executed", "detail": "suppressed bank=FNB; fallback offered: none"}})
    outcome(IDS["suppress_fnb"], sf + 240, "suppress_path", {"bank": "FNB"}, {"fallback": None}, "harmed",
            ["successes per window fell 482 -> 350 (z=6.0)"],
            {"platform": _figures(600, 118, 900.0), "target": _figures(156, 101, 20000.0)},
            {"platform": _figures(380, 30, 800.0, 1), "target": _figures(0, 0, 0.0, 1)}, sf, status="approved",
            approver="ops-lead",
            rollback={"status": "executed", "detail": "rolled back suppress_path:bank=FNB: harmed",
                      "action_id": IDS["suppress_fnb"]},
            windows=1,
            sig={"category": "issuer", "target_key": "bank=FNB", "target_dims": "bank", "dominant_error": "ISSUER_DOWN",
                 "error_codes": "ISSUER_DOWN,BANK_TIMEOUT", "magnitude": "major",
                 "method_mix": "card,eft,palm,payshap"})
    audit.close()
    return dict(IDS)
