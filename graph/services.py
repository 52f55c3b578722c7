"""What the nodes work with: the live objects behind one agent deployment.

`Context` is the LangGraph runtime context (react-agent style); it carries an
`AgentServices`. When a run gives none (LangGraph Studio / Server), services are
built once per process from the environment's Settings.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from payops.guardrails.notify import ListNotifier, Notifier
from payops.memory.approvals import ApprovalBook
from payops.memory.audit import AuditLog
from payops.memory.lessons import LessonStore
from payops.memory.stores import open_audit
from payops.settings import Settings
from payops.signals.sources import Source
from payops.signals.window import EventWindow, WindowSnapshot
from payops.storage.keys import private_file
from payops.tools.control_plane import ControlPlane, SimulatedControlPlane
from payops.tools.palm_ops import PalmOps
from payops.tools.permissions import PermissionTable, permission_table

from .reasoners.base import Reasoner, Thresholds
from .reasoners.rules import RuleReasoner


@dataclass
class AgentServices:
    settings: Settings
    window: EventWindow
    control_plane: ControlPlane
    audit: AuditLog
    lessons: LessonStore
    reasoner: Reasoner
    permissions: PermissionTable
    notifier: Notifier
    source: Source | None = None
    approvals: ApprovalBook | None = None  # None: escalations are recorded, no approval threads (replay)
    approval_graph: Any = None
    clock: Callable[[], float] = time.time  # wall clock for approval expiry
    palm: PalmOps | None = None  # palm-pay operations (None: palm tools fail with a clear reason)
    fallback_reasoner: Reasoner | None = None
    # This process's latest windows, oldest first, for the reasoner (at most REASONING_HISTORY_WINDOWS):
    # not checkpointed, so after a restart the reasoner starts cautious.
    recent_windows: list[WindowSnapshot] = field(default_factory=list)
    restored: bool = False  # the checkpoint's baselines and actions in force are back in the live objects

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Live objects, not data: LangGraph's context schema (Studio, Server) shows the field without them."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "object", "description": "live services (built from the settings when absent)"}

    @property
    def thread_id(self) -> str:
        return f"payops:{self.settings.deployment}"

    @property
    def thresholds(self) -> Thresholds:
        s = self.settings
        return Thresholds(s.min_segment_attempts, s.min_excess_failures, s.significance_z, s.action_ttl_seconds,
                          s.no_data_seconds, s.alert_review_ticks)


@dataclass
class Context:
    """LangGraph runtime context. Fields settable per run; services built from Settings if absent."""

    services: AgentServices | None = None


def make_reasoner(settings: Settings) -> Reasoner:
    if settings.llm_model:
        from .reasoners.llm import LLMReasoner

        return LLMReasoner.from_settings(settings, fallback=RuleReasoner())
    return RuleReasoner()


def sqlite_store(path: Path) -> BaseStore:
    from langgraph.store.sqlite import SqliteStore

    # isolation_level=None: SqliteStore manages its own transactions (STACK-NOTES).
    conn = sqlite3.connect(str(private_file(path)), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store


def control_plane_for(settings: Settings) -> ControlPlane:
    """The HTTP adapter when an orchestrator URL is configured, else the in-process simulated one."""
    if settings.orchestrator_url:
        from payops.tools.http_control_plane import HttpControlPlane

        return HttpControlPlane(settings.orchestrator_url)
    return SimulatedControlPlane()


def build_services(settings: Settings | None = None, *, source: Source | None = None, in_memory: bool = False,
                   control_plane: ControlPlane | None = None, notifier: Notifier | None = None,
                   reasoner: Reasoner | None = None, palm: PalmOps | None = None) -> AgentServices:
    """Services for one deployment. `in_memory` keeps nothing on disk (replay, evals).

    The palm-pay backend is attached (opened lazily, on the first palm-pay tool) unless
    `in_memory`; pass `palm` to choose another.
    """
    settings = settings or Settings()
    if in_memory:
        audit = AuditLog(":memory:")
        store: BaseStore = InMemoryStore()
        approvals = None
    elif settings.database_url:
        # PostgreSQL for every store (storage/postgres.py); the schema comes from `payops db upgrade`.
        from payops.storage.postgres import agent_database, postgres_store

        settings.ensure_state_dir()  # still holds the palm-pay keyring file unless PAYOPS_DATA_KEY is set
        database = agent_database(settings.database_url)
        audit = open_audit(settings, database)
        store = postgres_store(settings.database_url)
        approvals = ApprovalBook(database=database, deployment=settings.deployment)
    else:
        state_dir = settings.ensure_state_dir()
        audit = open_audit(settings)
        store = sqlite_store(state_dir / "lessons.db")
        approvals = ApprovalBook(state_dir / "approvals.db", deployment=settings.deployment)
    return AgentServices(
        settings=settings,
        window=EventWindow(settings.window_seconds, significance_z=settings.significance_z),
        control_plane=control_plane if control_plane is not None else (
            SimulatedControlPlane() if in_memory else control_plane_for(settings)),
        audit=audit,
        lessons=LessonStore(store),
        reasoner=reasoner or make_reasoner(settings),
        permissions=permission_table(path=settings.palm_spec_path),
        notifier=notifier or ListNotifier(),
        source=source,
        approvals=approvals,
        palm=palm if palm is not None or in_memory else PalmOps.from_settings(settings),
        fallback_reasoner=RuleReasoner(),
    )


_default: AgentServices | None = None


def default_services() -> AgentServices:
    global _default
    if _default is None:
        _default = build_services()
    return _default


def services_of(context: Context | None) -> AgentServices:
    if context is not None and context.services is not None:
        return context.services
    return default_services()
