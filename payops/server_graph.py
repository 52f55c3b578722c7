"""The graph LangGraph Server runs on a cron: one real tick of the deployment per invocation.

`langgraph.json` registers two graphs. `payops` (graph/builder.py) is the agent itself, for Studio to
draw and inspect. `payops-tick` is this one: its single node runs `payops tick` in-process — the
partition lock, the source named by `PAYOPS_SOURCE`, the stores and control plane from the settings —
so a Server cron on its assistant decides real windows. The agent's checkpointer stays the
authoritative one: the Server's own checkpointer holds only this wrapper's small state, while the
agent's thread, its approval threads, the audit trail and the lessons live where `payops` keeps them.
Point both at one PostgreSQL (`PAYOPS_DATABASE_URL`) and `payops pending` / `approve` and the HTTP
API see what the Server's ticks escalated.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class TickSummary(TypedDict, total=False):
    status: str  # done | not_due | idle | locked | error
    partition: str
    window_end: float
    decision_id: str
    category: str
    tool: str
    executed: bool
    escalated: bool
    detail: str


class TickRequest(TypedDict, total=False):
    partition: str  # default: PAYOPS_DEPLOYMENT


def tick_node(state: TickRequest) -> TickSummary:
    from payops.scheduling import TickLocked, TickUsageError, run_tick
    from payops.settings import Settings

    overrides: dict[str, Any] = {"deployment": state["partition"]} if state.get("partition") else {}
    settings = Settings(**overrides)
    try:
        outcome = run_tick(settings, source=settings.source.split())
    except TickLocked:
        return {"status": "locked", "partition": settings.deployment,
                "detail": "another tick of this partition is running"}
    except TickUsageError as exc:
        return {"status": "error", "partition": settings.deployment, "detail": str(exc)}
    summary: TickSummary = {"status": outcome.status, "partition": outcome.partition}
    if outcome.window_end is not None:
        summary["window_end"] = outcome.window_end
    if outcome.state:
        from payops.decisions import decision_line

        line = decision_line(outcome.state)  # CONTRACT §4: the same fields as replay's decisions
        summary.update({"decision_id": line["decision_id"], "category": line["category"],
                        "tool": line["action"]["tool"], "executed": line["executed"], "escalated": line["escalated"]})
    return summary


def build_tick_graph() -> Any:
    g = StateGraph(TickSummary, input_schema=TickRequest, output_schema=TickSummary)
    g.add_node("tick", tick_node)
    g.add_edge(START, "tick")
    g.add_edge("tick", END)
    return g.compile(name="payops-tick")


graph = build_tick_graph()
