-- 0001: the schemas, and the agent's audit trail and approval requests (schema payops).
-- Same columns and meaning as memory/audit.py and memory/approvals.py on SQLite.
CREATE SCHEMA IF NOT EXISTS payops;
CREATE SCHEMA IF NOT EXISTS palmpay;
CREATE SCHEMA IF NOT EXISTS langgraph;

CREATE TABLE payops.audit_log (
    seq BIGINT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    record BYTEA NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_decision ON payops.audit_log (decision_id);
CREATE INDEX audit_log_kind ON payops.audit_log (kind, seq);

-- The head row exists from the start: appenders serialise on SELECT ... FOR UPDATE of it.
CREATE TABLE payops.audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO payops.audit_head (id, count, hash) VALUES (1, 0, repeat('0', 64));

CREATE TABLE payops.approvals (
    decision_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    deployment TEXT,                -- the agent deployment (partition) whose ticks apply it
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,           -- pending | approved | rejected | expired | applied | voided
    request BYTEA NOT NULL,
    approver TEXT,
    note TEXT,
    decided_at DOUBLE PRECISION,
    applied_at DOUBLE PRECISION,
    result TEXT
);
CREATE INDEX approvals_status ON payops.approvals (status, created_at);
