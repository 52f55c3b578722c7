"""The regression gate: the rules reasoner's recorded level, in evals/gate.json, checked after a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GATE_FILE = Path(__file__).resolve().parent / "gate.json"


def load_gate(path: Path | None = None) -> dict[str, Any]:
    p = path or GATE_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no gate file at {p}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def metrics(run: dict[str, Any]) -> dict[str, float | None]:
    """The figures the gate can hold a run to, from one run of results.json."""
    s = run["summary"]
    cl = run.get("closed_loop_summary") or {}
    errors = sum(1 for c in run["cases"] if c.get("error")) + int(cl.get("errors") or 0)
    return {
        "cases": s["cases"],
        "pass_rate": s["pass_rate"],
        "detection_rate": s["detection_rate"],
        "category_accuracy": s["category_accuracy"],
        "action_accuracy": s["action_accuracy"],
        "controls_clean_rate": (s["controls_clean"] / s["controls"]) if s["controls"] else None,
        "audit_completeness": s["audit_completeness"],
        "mean_ticks_to_detect": s["mean_ticks_to_detect"],
        "false_actions": s["false_actions"],
        "unsafe_actions": s["unsafe_actions"],
        "errors": errors,
        "closed_loop_share_of_oracle_agent": cl.get("share_of_oracle_agent"),
        "closed_loop_saved_agent": cl.get("saved_agent"),
        "closed_loop_agent_worse": len(cl["agent_worse_than_none"]) if "agent_worse_than_none" in cl else None,
    }


def check(results: dict[str, Any], gate: dict[str, Any]) -> list[str]:
    """Failures as readable lines; [] when the gated run is at or above its recorded level."""
    label = gate.get("run", "rules")
    run = next((r for r in results["runs"] if r["label"] == label), None)
    if run is None:
        return [f"the gate applies to the '{label}' run, which this evaluation did not include"]
    got = metrics(run)
    failures = []
    for name, floor in gate.get("min", {}).items():
        value = got.get(name)
        if value is None or value < floor:
            failures.append(f"{name} = {value} is below the recorded minimum {floor}")
    for name, ceiling in gate.get("max", {}).items():
        value = got.get(name)
        if value is None or value > ceiling:
            failures.append(f"{name} = {value} is above the allowed maximum {ceiling}")
    return failures
