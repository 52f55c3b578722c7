"""Runs ticks: owns the clock, the checkpointer and the thread of one deployment."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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


class LatestCheckpointSaver(InMemorySaver):
    """An in-memory checkpointer that keeps only each thread's latest checkpoint.

    InMemorySaver keeps every checkpoint and every version of every channel: a replay
    grew by ~90 KB of pickled state per tick (180 MB at 1M lines, 421 MB at 4M) for a
    history nobody reads (a replay or an eval resumes from the latest checkpoint only;
    the durable agent's SqliteSaver is untouched). Pruning after each put keeps memory
    flat with run length.
    """

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        saved = super().put(config, checkpoint, metadata, new_versions)
        thread_id = saved["configurable"]["thread_id"]
        namespace = saved["configurable"]["checkpoint_ns"]
        latest = saved["configurable"]["checkpoint_id"]
        checkpoints = self.storage[thread_id][namespace]
        for old in [c for c in checkpoints if c != latest]:
            del checkpoints[old]
            self.writes.pop((thread_id, namespace, old), None)
        versions = checkpoint["channel_versions"]
        stale = [key for key in self.blobs
                 if key[0] == thread_id and key[1] == namespace and versions.get(key[2]) != key[3]]
        for key in stale:
            del self.blobs[key]
        return saved


class Agent:
    """One deployment: a thread on a checkpointer, services, and a clock in event time."""

    def __init__(self, services: AgentServices, checkpointer: Any = None) -> None:
        self.services = services
        self.checkpointer = checkpointer if checkpointer is not None else LatestCheckpointSaver()
        self.graph = build_graph(checkpointer=self.checkpointer)
        services.approval_graph = build_approval_graph(self.checkpointer)
        self.config = {"configurable": {"thread_id": services.thread_id}}

    @classmethod
    def durable(cls, services: AgentServices) -> Agent:
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
        """After a restart, the source resumes where the last checkpointed tick left it: a simulator from
        where the thread stopped (minus one window); a log from its ack floor, dropping what that tick had
        counted by the position its checkpoint recorded (NatsSource.skip_to)."""
        state = self.last_state()
        previous = state.get("window_end")
        source = self.services.source
        if previous is None or source is None:
            return
        end = self.next_window_end()
        assert end is not None
        start = end - self.services.settings.window_seconds
        if source.ordered:
            source.skip_to(start)
        else:  # the earlier process read past its last window by the allowed lateness: so does this one
            source.skip_to(start, float(previous) + self.services.settings.allowed_lateness_seconds,
                           position=state.get("source_position"))

    def drained(self, window_end: float) -> bool:
        """After deciding the window ending at `window_end`: nothing will ever come for a later one.

        The source is exhausted and the window holds nothing read ahead (within the allowed
        lateness) for a later window: a run over a file stops here, and loses nothing.
        """
        source = self.services.source
        if source is None or not source.exhausted:
            return False
        return not self.services.window.holds_from(window_end)

    def tick(self, window_end: float | None = None) -> TickResult | None:
        end = window_end if window_end is not None else self.next_window_end()
        if end is None:
            return None
        state = self.graph.invoke({"window_end": end}, self.config, context=Context(services=self.services),
                                  durability="exit")
        # The tick is checkpointed: a log source may now acknowledge what no open window needs.
        if self.services.source is not None:
            settings = self.services.settings
            self.services.source.commit(end + settings.tick_seconds - settings.window_seconds)
        return TickResult(state)


@contextmanager
def opened(agent: Agent) -> Iterator[Agent]:
    try:
        yield agent
    finally:
        conn = getattr(agent.checkpointer, "conn", None)
        if conn is not None:
            conn.close()
