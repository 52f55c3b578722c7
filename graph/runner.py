"""Runs ticks: owns the clock, the checkpointer and the thread of one deployment."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from langgraph.checkpoint.memory import InMemorySaver

from .approval import build_approval_graph
from .builder import build_graph
from .services import AgentServices, Context


@dataclass
class TickResult:
    state: dict[str, Any]

    @property
    def decision_id(self) -> str:
        return self.state["decision_id"]


def sqlite_checkpointer(path: str) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from payops.storage.keys import private_file

    conn = sqlite3.connect(str(private_file(path)), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return SqliteSaver(conn)


class Agent:
    """One deployment: a thread on a checkpointer, services, and a clock in event time."""

    def __init__(self, services: AgentServices, checkpointer: Any = None) -> None:
        self.services = services
        self.checkpointer = checkpointer if checkpointer is not None else InMemorySaver()
        self.graph = build_graph(checkpointer=self.checkpointer)
        services.approval_graph = build_approval_graph(self.checkpointer)
        self.config = {"configurable": {"thread_id": services.thread_id}}

    @classmethod
    def durable(cls, services: AgentServices) -> "Agent":
        if services.settings.database_url:  # PostgresSaver: checkpoints and approval threads shared by every worker
            from payops.storage.postgres import postgres_checkpointer

            return cls(services, postgres_checkpointer(services.settings.database_url))
        path = services.settings.ensure_state_dir() / "checkpoints.db"
        return cls(services, sqlite_checkpointer(str(path)))

    def last_state(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self.config).values or {})

    def next_window_end(self) -> float | None:
        """Where the clock stands: after the last checkpointed tick, or one tick after the source starts.

        A tick that raised part-way (the database went away, a bug) leaves a checkpoint with
        nodes still to run: its window is decided again, under the same decision id.
        """
        snapshot = self.graph.get_state(self.config)
        previous = (snapshot.values or {}).get("window_end")
        tick = self.services.settings.tick_seconds
        if previous is not None:
            return float(previous) + (0.0 if snapshot.next else tick)
        source = self.services.source
        first = source.first_ts() if source is not None else None
        return None if first is None else float(first) + tick

    def resume_source(self) -> None:
        """After a restart, a simulator continues from where the thread stopped (minus one window)."""
        previous = self.last_state().get("window_end")
        skip = getattr(self.services.source, "skip_to", None)
        if previous is not None and skip is not None:
            end = self.next_window_end()
            assert end is not None
            skip(end - self.services.settings.window_seconds)

    def tick(self, window_end: float | None = None) -> TickResult | None:
        end = window_end if window_end is not None else self.next_window_end()
        if end is None:
            return None
        state = self.graph.invoke({"window_end": end}, self.config, context=Context(services=self.services), durability="exit")
        # The tick is checkpointed: a log source may now acknowledge what no open window needs.
        commit = getattr(self.services.source, "commit", None)
        if commit is not None:
            settings = self.services.settings
            commit(end + settings.tick_seconds - settings.window_seconds)
        return TickResult(state)


@contextmanager
def opened(agent: Agent) -> Iterator[Agent]:
    try:
        yield agent
    finally:
        conn = getattr(agent.checkpointer, "conn", None)
        if conn is not None:
            conn.close()
