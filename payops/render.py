"""The strict per-cycle output of the brief, and the CONTRACT.md §4 decision line."""

from __future__ import annotations

import math
import re
from datetime import UTC, tzinfo
from typing import Any

from payops.memory.explain import when
from payops.tools.actions import ACTIONS

APPROVAL_LINE = "Recommendation: Human approval required before acting."
CATEGORY_LABELS = {
    "healthy": "Healthy",
    "user": "User-related",
    "issuer": "Bank/issuer degradation",
    "network": "Network or system failure",
    "config": "Retry or routing misconfiguration",
    "security": "Security",
}


# Characters a label must not smuggle onto a terminal: C0/C1 controls (a newline forges output
# lines, ESC starts terminal sequences), DEL, line/paragraph separators and bidi overrides.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with control characters shown as escapes (\\n, \\x1b, \\u202e): one console line stays one line."""
    return _UNPRINTABLE.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                  else f"\\u{ord(m.group()):04x}"), text)


def _target(target: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(target.items())) or "all traffic"


def needs_human(state: dict[str, Any], threshold: float) -> bool:
    return state["execution"]["status"] == "escalated" or (
        state["proposal"]["tool"] != "no_action" and float(state["diagnosis"]["confidence"]) < threshold)


def risk_assessment(state: dict[str, Any]) -> str:
    proposal, verdict = state["proposal"], state["verdict"]
    spec = ACTIONS.get(proposal["tool"])
    parts = []
    if spec is not None and spec.changes_traffic:
        parts.append(f"touches {verdict.get('blast_radius', 0.0):.0%} of current traffic")
    if spec is not None:
        parts.append("reversible (" + spec.rollback + ")" if spec.reversible and spec.rollback else
                     "reversible" if spec.reversible else "IRREVERSIBLE")
    ttl = proposal["args"].get("ttl_seconds")
    if ttl:
        parts.append(f"expires after {ttl:.0f}s")
    blocking = [r["reason"] for r in verdict["results"] if r["verdict"] != "allow"]
    parts.append(f"guardrails: {verdict['verdict']}" + (f" ({'; '.join(blocking)})" if blocking else ""))
    track = state.get("track_record")
    if track:
        c = track["counts"]
        parts.append(f"past outcomes of {track['tool']} on {len(track['lessons'])} similar incident(s): "
                     f"{c['helped']} helped, {c['no_effect']} no effect, {c['harmed']} harmed -> confidence "
                     f"{track['prior']:.2f} adjusted to {track['adjusted']:.2f} (Beta posterior)")
        if track.get("forced_approval"):
            parts.append(f"harmed on similar incident(s) {', '.join(track['harmed_ids'])}: not taken autonomously")
    elif state.get("lessons_consulted"):
        n = len(state["lessons_consulted"])
        parts.append(f"{n} similar past incident(s) consulted"
                     + (", none with this action" if spec is not None and spec.changes_traffic else ""))
    return "; ".join(parts)


def render_cycle(state: dict[str, Any], confidence_threshold: float = 0.8, tz: tzinfo = UTC) -> str:
    """The cycle as an operator reads it; its times in `tz`, the display zone, named (the record stays epoch)."""
    d, p, e = state["diagnosis"], state["proposal"], state["execution"]
    lines = [
        f"── tick {state.get('tick')} · window ending {when(float(state['window_end']), tz)} "
        f"· decision {state['decision_id']}",
        f"Diagnosis: {CATEGORY_LABELS.get(d['category'], d['category'])} — {d['summary']}"
        + (f" [target: {_target(d['target'])}]" if d["target"] else ""),
        "Evidence:",
        *[f"  - {line}" for line in d["evidence"]],
    ]
    if d.get("alternatives"):
        lines.append("  Alternatives considered: " + " | ".join(d["alternatives"][:3]))
    args = ", ".join(f"{k}={v}" for k, v in p["args"].items())
    lines.append(f"Proposed Action: {p['tool']}" + (f" on {_target(p['target'])}" if p["tool"] != "no_action" else "")
                 + (f" ({args})" if args else ""))
    lines.append(f"Risk Assessment: {risk_assessment(state)}")
    # Truncated, not rounded: 0.797 must not print as 0.80 next to "approval required".
    lines.append(f"Confidence Score: {math.floor(float(d['confidence']) * 100) / 100:.2f}")
    outcome = {"executed": "WOULD EXECUTE (shadow)" if e.get("plane") == "shadow" else "EXECUTED",
               "escalated": "ESCALATED to human approval", "denied": "DENIED by guardrails", "skipped": "NOTHING TO DO",
               "failed": "FAILED", "unknown": "UNKNOWN (to reconcile)"}.get(e["status"], e["status"])
    lines.append(f"Outcome: {outcome} — {e['detail']}")
    quality = data_quality_line(state.get("snapshot") or {})
    if quality:
        lines.append(quality)
    for note in state.get("housekeeping") or []:
        if note.get("op") == "approved_action_void":  # the operator must see why an approval was not honoured
            lines.append(f"  note: approval of {note.get('decision_id')} voided, {note.get('tool')} not applied: "
                         f"{note.get('voided') or note.get('result')}")
            continue
        lines.append(f"  note: {note['op']} {note.get('tool', '')} "
                     f"{note.get('decision_id', note.get('action_id', ''))}".rstrip())
    if state.get("llm_fallback"):
        lines.append(f"  note: the rules decided: {state['llm_fallback']}")
    if needs_human(state, confidence_threshold):
        lines.append(APPROVAL_LINE)
    # Labels are data from the feed (bank, route, terminal names): escaped, never interpreted.
    return "\n".join(printable(line) for line in lines)


def data_quality_line(digest: dict[str, Any]) -> str:
    """What this tick's window could not use, when anything: late events, events ahead of the clock, bad lines."""
    late, dropped = int(digest.get("late_events") or 0), int(digest.get("late_dropped") or 0)
    ahead, bad = int(digest.get("ahead_of_clock") or 0), int(digest.get("bad_lines") or 0)
    parts = []
    if late:
        parts.append(f"{late} event(s) arrived after their window was decided ({dropped} counted in no window)")
    if ahead:
        parts.append(f"{ahead} event(s) discarded as implausibly far ahead of the clock")
    if bad:
        parts.append(f"{bad} bad line(s) skipped")
    return ("Data quality: " + "; ".join(parts)) if parts else ""


# CONTRACT.md §4's decision line is the agent's output, not rendering: payops/decisions.py. Re-exported here for
# the tests that import it from payops.render (down here, apart from the display-zone edits to the imports).
from payops.decisions import decision_json as decision_json  # noqa: E402 - a re-export, see above
from payops.decisions import decision_line as decision_line  # noqa: E402 - likewise
