"""Open one store for a command that needs only it (`payops why`, `audit verify`, `lessons`),
on PostgreSQL when `Settings.database_url` is set, else on the SQLite files of the state directory."""

from __future__ import annotations

import sqlite3
from typing import Any

from payops.memory.audit import AuditLog


def open_audit(settings: Any) -> AuditLog:
    if settings.database_url:
        from .postgres import agent_database

        return AuditLog(database=agent_database(settings.database_url, max_size=1))
    return AuditLog(settings.state_dir / "audit.db")


def open_lesson_store(settings: Any) -> Any:
    """The LangGraph BaseStore that holds the lessons."""
    if settings.database_url:
        from .postgres import postgres_store

        return postgres_store(settings.database_url)
    from langgraph.store.sqlite import SqliteStore

    # isolation_level=None: SqliteStore manages its own transactions (STACK-NOTES).
    conn = sqlite3.connect(str(settings.state_dir / "lessons.db"), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store
