"""Database plumbing: SQLite by default, PostgreSQL when `PAYOPS_DATABASE_URL` is set.

- `db`: the seam the stores write their SQL against (`SqliteDatabase`, `PostgresDatabase`).
- `postgres`: LangGraph's PostgresSaver / PostgresStore and the agent's tables on one DSN.
- `migrations`: versioned SQL for PostgreSQL (`payops db upgrade`), applied once each.
- `locks`: advisory locks, so each tick of a partition runs exactly once across workers.

SQLite state keeps creating and migrating itself on first use, exactly as before.
"""
