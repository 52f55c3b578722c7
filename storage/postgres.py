"""Every store of one deployment on one PostgreSQL database (`Settings.database_url`).

- checkpoints and approval threads: LangGraph `PostgresSaver` (schema `langgraph`);
- lessons: LangGraph `PostgresStore` (schema `langgraph`; lessons filter with `$eq` on
  strings only, because PostgresStore compares `$gt`/`$lt` as text);
- the audit trail and approval requests: `PostgresDatabase` on schema `payops`;
- palm-pay: its own pool on schema `palmpay` (see palmpay/store.py).

Each opener checks the schema is migrated first and says what to run if not.
"""

from __future__ import annotations

from typing import Any

from .db import AGENT_SCHEMA, LANGGRAPH_SCHEMA, PostgresDatabase, pg_connect
from .migrations import require_current

AGENT_POOL_SIZE = 4  # a tick uses one connection at a time; the API's threads share the rest


def agent_database(dsn: str, *, max_size: int = AGENT_POOL_SIZE) -> PostgresDatabase:
    require_current(dsn)
    return PostgresDatabase(dsn, AGENT_SCHEMA, max_size=max_size, name="payops-agent")


def postgres_checkpointer(dsn: str) -> Any:
    from langgraph.checkpoint.postgres import PostgresSaver

    require_current(dsn)
    return PostgresSaver(pg_connect(dsn, schema=LANGGRAPH_SCHEMA, dict_rows=True))


def postgres_store(dsn: str) -> Any:
    from langgraph.store.postgres import PostgresStore

    require_current(dsn)
    return PostgresStore(pg_connect(dsn, schema=LANGGRAPH_SCHEMA, dict_rows=True))
