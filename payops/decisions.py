"""CONTRACT.md §4: the decision line, one JSON object per tick.

It is the agent's output contract, not terminal rendering (payops/render.py): `payops replay` writes it,
the langgraph server (payops/server_graph.py) logs it, and payops/wiring.py emits it for every tick.
"""

from __future__ import annotations

from typing import Any

import orjson


def late_events(digest: dict[str, Any]) -> int:
    """CONTRACT.md §4 `late_events`: too late for their (decided) window, plus discarded as ahead of the clock."""
    return int(digest.get("late_events") or 0) + int(digest.get("ahead_of_clock") or 0)


def decision_line(state: dict[str, Any]) -> dict[str, Any]:
    """CONTRACT.md §4: one object per tick (`late_events` only when there were some: optional, version 2)."""
    p, e = state["proposal"], state["execution"]
    executed = e["status"] == "executed" and p["tool"] != "no_action"
    line = {
        "window_end": float(state["window_end"]),
        "category": state["diagnosis"]["category"],
        "confidence": float(state["diagnosis"]["confidence"]),
        "action": {"tool": p["tool"], "target": p["target"], "args": p["args"]},
        "executed": executed,
        "escalated": e["status"] == "escalated",
        "evidence": list(state["diagnosis"]["evidence"]),
        "decision_id": state["decision_id"],
    }
    if executed and e.get("plane"):
        line["plane"] = e["plane"]  # optional field (version 2): where the executed action ran
    late = late_events(state.get("snapshot") or {})
    if late:
        line["late_events"] = late
    return line


def decision_json(state: dict[str, Any]) -> bytes:
    return orjson.dumps(decision_line(state), option=orjson.OPT_SORT_KEYS) + b"\n"
