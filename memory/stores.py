"""Open one store for a command that needs only it (`payops why`, `audit verify`, `lessons`),
on PostgreSQL when `Settings.database_url` is set, else on the SQLite files of the state directory."""

from __future__ import annotations

import sqlite3
from typing import Any

from payops.storage.keys import KeyChain, private_file, settings_key_chain

from .audit import AuditLog


def audit_key_chain(settings: Any) -> KeyChain:
    """Environment (PAYOPS_KEY_*), the key command, then the key folder — as Settings name them."""
    return settings_key_chain(settings)


def open_audit(settings: Any, database: Any = None) -> AuditLog:
    """The agent's trail with its keys and checkpoint file as Settings say (`database`: a shared PostgreSQL one)."""
    common = {"key_source": audit_key_chain(settings), "checkpoint_path": settings.audit_checkpoint_path,
              "key_home": settings.state_dir, "checkpoint_every": settings.audit_checkpoint_every}
    if database is not None:
        return AuditLog(database=database, **common)
    if settings.database_url:
        from payops.storage.postgres import agent_database

        return AuditLog(database=agent_database(settings.database_url, max_size=1), **common)
    return AuditLog(settings.ensure_state_dir() / "audit.db", **common)


def open_lesson_store(settings: Any) -> Any:
    """The LangGraph BaseStore that holds the lessons."""
    if settings.database_url:
        from payops.storage.postgres import postgres_store

        return postgres_store(settings.database_url)
    from langgraph.store.sqlite import SqliteStore

    # isolation_level=None: SqliteStore manages its own transactions (STACK-NOTES).
    conn = sqlite3.connect(str(private_file(settings.state_dir / "lessons.db")), check_same_thread=False,
                           isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store
