"""A grounded, deterministic explanation of one decision, from its audit records."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from .audit import AuditEntry


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _target(target: dict[str, str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((target or {}).items())) or "all traffic"


def explain_decision(entries: Sequence[AuditEntry]) -> str:
    decision = next((e for e in entries if e.kind == "decision"), None)
    if decision is None:
        return "No decision record."
    r = decision.record
    d, p, v, x = r["diagnosis"], r["proposal"], r["verdict"], r["execution"]
    snap = r.get("snapshot") or {}
    lines = [
        f"Decision {r['decision_id']} (audit record #{decision.seq}), window ending {_when(r['window_end'])}.",
        f"What I saw: {snap.get('failures')}/{snap.get('attempts')} attempts failed ({100 * float(snap.get('failure_rate', 0)):.1f}%), "
        f"p95 latency {snap.get('latency_p95_ms')} ms, attempts per payment {snap.get('attempts_per_payment')}.",
        f"What I concluded: {d['category']} on {_target(d['target'])} with confidence {d['confidence']:.2f} "
        f"({d['reasoner']} reasoner): {d['summary']}",
        "Evidence:",
        *[f"  - {e}" for e in d["evidence"]],
    ]
    if d.get("alternatives"):
        lines.append("Alternatives I rejected:")
        lines += [f"  - {a}" for a in d["alternatives"]]
    lines.append(f"What I proposed: {p['tool']} on {_target(p['target'])} {p['args'] or ''}".rstrip())
    lines.append(f"What the guardrails said: {v['verdict']}")
    lines += [f"  - {g['rule']}: {g['verdict']} ({g['reason']})" for g in v["results"] if g["verdict"] != "allow"] or ["  - every guardrail allowed it"]
    lines.append(f"What ran: {x['status']} — {x['detail']}")
    for e in entries:
        if e.kind == "approval":
            a = e.record
            lines.append(f"Who decided: {a['status']} by {a['approver']} at {_when(e.at)}" + (f" — note: {a['note']}" if a.get("note") else ""))
    if r.get("lessons_consulted"):
        lines.append("Similar past incidents consulted: " + ", ".join(f"{l['decision_id']} ({l['tool']}: {l['verdict']})" for l in r["lessons_consulted"]))
    for e in entries:
        if e.kind == "outcome":
            o = e.record
            lines.append(f"Outcome so far: {o['verdict']} — {o.get('detail', '')}")
    return "\n".join(lines)
