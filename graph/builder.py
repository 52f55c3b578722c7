"""build_graph(): Observe -> Assess (outcomes of earlier actions) -> Reason -> Decide -> Guard -> Act | Escalate
-> Learn.

`graph` at module level is what langgraph.json points LangGraph Studio / Server at
(they bring their own checkpointer).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from payops.graph import nodes, watching
from payops.graph.services import Context
from payops.graph.state import AgentState, TickInput, TickOutput
from payops.storage.crash import crash_point


def _crashable(name: str, node: Callable[..., Any]) -> Callable[..., Any]:
    """Under the crash script only (PAYOPS_CRASH_AT=after_<node>[:N]): SIGKILL right after the node ran."""
    if not os.environ.get("PAYOPS_CRASH_AT"):
        return node

    @functools.wraps(node)
    def wrapped(state: Any, runtime: Any) -> Any:
        out = node(state, runtime)
        crash_point(f"after_{name}")
        return out

    return wrapped


def build_graph(checkpointer: Any = None, store: Any = None) -> Any:
    # The output is the checkpointed state: the live window (AgentState.window) stays inside the run.
    g = StateGraph(AgentState, context_schema=Context, input_schema=TickInput, output_schema=TickOutput)
    steps = {"observe": nodes.observe, "assess": watching.assess, "reason": nodes.reason, "decide": nodes.decide,
             "guard": nodes.guard, "act": nodes.act, "escalate": nodes.escalate, "learn": nodes.learn}
    for name, node in steps.items():
        g.add_node(name, _crashable(name, node))
    g.add_edge(START, "observe")
    g.add_edge("observe", "assess")
    g.add_edge("assess", "reason")
    g.add_edge("reason", "decide")
    g.add_edge("decide", "guard")
    g.add_conditional_edges("guard", nodes.after_guard, {"act": "act", "escalate": "escalate"})
    g.add_edge("act", "learn")
    g.add_edge("escalate", "learn")
    g.add_edge("learn", END)
    return g.compile(checkpointer=checkpointer, store=store, name="payops")


graph = build_graph()
