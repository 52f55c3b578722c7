"""build_graph(): Observe -> Assess (outcomes of earlier actions) -> Reason -> Decide -> Guard -> Act | Escalate -> Learn.

`graph` at module level is what langgraph.json points LangGraph Studio / Server at
(they bring their own checkpointer).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from payops.graph import nodes
from payops.graph.services import Context
from payops.graph.state import AgentState, TickInput


def build_graph(checkpointer: Any = None, store: Any = None) -> Any:
    g = StateGraph(AgentState, context_schema=Context, input_schema=TickInput)
    g.add_node("observe", nodes.observe)
    g.add_node("assess", nodes.assess)
    g.add_node("reason", nodes.reason)
    g.add_node("decide", nodes.decide)
    g.add_node("guard", nodes.guard)
    g.add_node("act", nodes.act)
    g.add_node("escalate", nodes.escalate)
    g.add_node("learn", nodes.learn)
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
