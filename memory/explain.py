"""A grounded, deterministic explanation of one decision, from its audit records.

Every figure printed is read from the records (decision, approval, outcome);
nothing is recomputed or guessed, so `payops why` says exactly what the agent
saw and did. Times are UTC, as in the cycle output, unless a display zone is given
(the chat passes its own, so one answer never mixes two zones).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from .audit import AuditEntry

EXECUTED_TOOLS_NOT_EVALUATED = ("alert_ops",)


def when(ts: float, tz: tzinfo = UTC) -> str:
    dt = datetime.fromtimestamp(float(ts), tz=tz)
    return dt.strftime("%Y-%m-%d %H:%M:%S ") + (dt.tzname() or "UTC")


def target_text(target: dict[str, str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((target or {}).items())) or "all traffic"


def pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%"


def figures_text(f: dict[str, Any] | None) -> str:
    if not f or not f.get("attempts"):
        return "no traffic"
    return (f"{f['failures']}/{f['attempts']} failed ({pct(f['failure_rate'])}), "
            f"p95 {float(f.get('latency_p95_ms', 0)):.0f} ms"
            + (f" over {f['windows']} window(s)" if int(f.get("windows", 1)) > 1 else ""))


def _args(args: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (args or {}).items())


def outcome_lines(o: dict[str, Any], at: float, tz: tzinfo = UTC) -> list[str]:
    lines = [f"Outcome: {o['verdict']} (concluded {when(at, tz)}, {o.get('windows', 0)} window(s) measured) — "
             f"{o.get('detail', '')}"]
    applied, decided = o.get("applied_at"), o.get("decided_at")
    if applied is not None and decided is not None and float(applied) != float(decided):
        lines.append(f"  (applied {when(o['applied_at'], tz)} after approval: 'before' is the window ending then)")
    before, after = o.get("before") or {}, o.get("after") or {}
    for scope in ("target", "destinations", "platform"):
        if scope in before or scope in after:
            lines.append(f"  {scope}: before {figures_text(before.get(scope))}; after {figures_text(after.get(scope))}")
    rollback = o.get("rollback")
    if rollback:
        lines.append(f"  rolled back because it harmed: {rollback.get('status')} — {rollback.get('detail', '')}")
    return lines


def explain_decision(entries: Sequence[AuditEntry], tz: tzinfo = UTC) -> str:
    decision = next((e for e in entries if e.kind == "decision"), None)
    if decision is None:
        return "No decision record."
    r = decision.record
    d, p, v, x = r.get("diagnosis") or {}, r.get("proposal") or {}, r.get("verdict") or {}, r.get("execution") or {}
    snap = r.get("snapshot") or {}
    lines = [f"Decision {r['decision_id']} (audit record #{decision.seq}), window ending {when(r['window_end'], tz)}."]
    errors = sorted((snap.get("top_errors") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    top = ", ".join(f"{code} {n}" for code, n in errors)
    lines.append(f"What I saw: {snap.get('failures')}/{snap.get('attempts')} attempts failed "
                 f"({pct(snap.get('failure_rate', 0))}), p95 latency {snap.get('latency_p95_ms')} ms, "
                 f"attempts per payment {snap.get('attempts_per_payment')}"
                 + (f"; top errors: {top}" if top else "") + ".")
    lines.append(f"What I concluded: {d.get('category')} on {target_text(d.get('target'))} with confidence "
                 f"{float(d.get('confidence', 0)):.2f} ({d.get('reasoner')} reasoner): {d.get('summary')}")
    lines.append("Evidence:")
    lines += [f"  - {e}" for e in d.get("evidence", [])]
    if d.get("alternatives"):
        lines.append("Alternatives I rejected:")
        lines += [f"  - {a}" for a in d["alternatives"]]
    consulted = r.get("lessons_consulted") or []
    if consulted:
        lines.append("Similar past incidents consulted: " + ", ".join(
            f"{past['decision_id']} ({past['tool']} on {past.get('target', '?')}: {past['verdict']})"
            for past in consulted))
    track = r.get("track_record")
    if track:
        c = track.get("counts", {})
        forced = (f"; harmed before on {', '.join(track['harmed_ids'])}, so not autonomous"
                  if track.get("forced_approval") else "")
        lines.append(f"Track record of {track['tool']} on similar incidents: {c.get('helped', 0)} helped, "
                     f"{c.get('no_effect', 0)} no effect, {c.get('harmed', 0)} harmed, "
                     f"{c.get('inconclusive', 0)} inconclusive; confidence {track['prior']:.2f} -> "
                     f"{track['adjusted']:.2f} (Beta posterior, prior strength {track.get('prior_strength')})"
                     + forced)
    lines.append(
        f"What I proposed: {p.get('tool')}"
        + (f" on {target_text(p.get('target'))}" if p.get("tool") != "no_action" else "")
        + (f" ({_args(p.get('args'))})" if p.get("args") else "")
    )
    lines.append(f"What the guardrails said: {v.get('verdict')}")
    lines += [f"  - {g['rule']}: {g['verdict']} — {g['reason']}" for g in v.get("results", [])]
    lines.append(f"What ran: {x.get('status')} — {x.get('detail')}")
    approvals = [e for e in entries if e.kind == "approval"]
    for e in approvals:
        a = e.record
        lines.append(
            f"Who decided: {a['status']} by {a['approver']} at {when(e.at, tz)}"
            + (f" — note: {a['note']}" if a.get("note") else "")
        )
    if x.get("status") == "executed" and p.get("tool") not in ("no_action",):
        lines.append("Who decided: the agent, autonomously (every guardrail allowed it).")
    for e in entries:
        if e.kind == "approved_action":
            run = e.record.get("execution") or {}
            lines.append(f"What ran after approval: {run.get('status')} at {when(e.at, tz)} — {run.get('detail', '')}")
        elif e.kind == "rollback":
            lines.append(f"Rolled back at {when(e.at, tz)}: {e.record.get('reason', '')}")
        elif e.kind == "reconcile":
            lines.append(f"Reconciled at {when(e.at, tz)}: {e.record.get('outcome')} — {e.record.get('detail', '')}")
    outcomes = [e for e in entries if e.kind == "outcome"]
    for e in outcomes:
        lines += outcome_lines(e.record, e.at, tz)
    if not outcomes and x.get("plane") == "shadow" and x.get("status") == "executed":
        lines.append(
            "Outcome so far: shadow mode: recorded as what would have run; nothing moved, so nothing is measured."
        )
    elif not outcomes:
        lines.append("Outcome so far: " + _pending_outcome(p.get("tool"), x.get("status"), approvals, entries))
    return "\n".join(lines)


def _pending_outcome(
    tool: str | None, status: str | None, approvals: list[AuditEntry], entries: Sequence[AuditEntry]
) -> str:
    if tool == "no_action" or status in ("skipped", "denied", "failed"):
        return "nothing ran, so there is nothing to measure."
    if tool in EXECUTED_TOOLS_NOT_EVALUATED:
        return "an alert changes no traffic; no effect to measure."
    if status == "escalated":
        if not approvals:
            return "waiting for a human (no approval or rejection recorded yet)."
        last = approvals[-1].record.get("status")
        if last != "approved":
            return f"not run ({last})."
        if not any(e.kind == "approved_action" for e in entries):
            return "approved; runs on the agent's next tick, then it is measured."
        return "approved and applied; under evaluation (no verdict recorded yet)."
    return "under evaluation (no verdict recorded yet)."
