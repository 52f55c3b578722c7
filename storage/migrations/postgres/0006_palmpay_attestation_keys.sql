-- 0006: terminal attestation's tables (palmpay/store.py SQLite migration 4), which attestation.py used
-- to create on first use outside the migrations ("IF NOT EXISTS": such a database already has them),
-- and the ids of the blind-index root and OTP MAC key the data was written under, so a process started
-- with other keys refuses to start instead of answering NOT_REGISTERED / OTP_INVALID for everything.
CREATE TABLE IF NOT EXISTS palmpay.palm_terminal_keys (
    terminal_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL,
    registered_by TEXT NOT NULL,
    revoked_at DOUBLE PRECISION,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS palmpay.palm_scan_nonces (
    terminal_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    payment_id TEXT,
    seen_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal_id, nonce)
);
CREATE INDEX IF NOT EXISTS palm_scan_nonces_by_age ON palmpay.palm_scan_nonces (seen_at);

ALTER TABLE palmpay.key_state ADD COLUMN IF NOT EXISTS index_key_id TEXT;
ALTER TABLE palmpay.key_state ADD COLUMN IF NOT EXISTS otp_key_id TEXT;

INSERT INTO palmpay.schema_version (version, applied_at) VALUES (4, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
