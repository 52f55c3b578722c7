"""The agent's state: plain JSON values, checkpointed after every tick.

What must survive a restart lives here (tick counter, clock, actions in force,
recent decisions); live objects (the event window, stores) live in services.
"""

from __future__ import annotations

from typing import Any

# typing_extensions' TypedDict: pydantic (LangGraph's input/output JSON schemas, Studio) refuses
# typing.TypedDict below Python 3.12. Same runtime dict: the checkpoint format is unchanged.
from typing_extensions import TypedDict


class AgentState(TypedDict, total=False):
    # clock
    tick: int
    window_end: float
    decision_id: str
    # observe
    snapshot: dict[str, Any]  # digest: key figures of the window
    # reason / decide
    diagnosis: dict[str, Any]
    proposal: dict[str, Any]
    llm_calls: list[dict[str, Any]]
    llm_fallback: str | None  # set when the rules decided because the LLM failed (timed out, unreachable, invalid)
    lessons_consulted: list[dict[str, Any]]  # similar past lessons (brief form), best first
    track_record: dict[str, Any] | None  # the proposal's record on similar incidents and the confidence adjustment
    # guard / act
    verdict: dict[str, Any]
    execution: dict[str, Any]
    approval: dict[str, Any] | None
    # memory that outlives a tick
    in_force: list[dict[str, Any]]
    history: list[dict[str, Any]]  # executed actions (bounded), newest last
    recent: list[dict[str, Any]]  # short-term incident buffer: last decisions (bounded)
    baselines: dict[str, Any]
    awaiting: list[dict[str, Any]]  # escalations waiting for a human: {decision_id, tool, target_key, at, finding, seen}
    housekeeping: list[dict[str, Any]]  # expiries, approved actions applied, outcomes this tick
    watching: list[dict[str, Any]]  # executed actions under outcome evaluation (memory.outcomes.Watch)


class TickInput(TypedDict, total=False):
    window_end: float
