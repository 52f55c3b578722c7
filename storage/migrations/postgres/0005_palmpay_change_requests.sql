-- 0005: palm-pay's two-person rule and payment fingerprints (palmpay/store.py SQLite migration 3): a human-initiated
-- revocation, suspension lift, limit change or key rotation waits here until a second, different
-- operator approves it; the status moves on once, so it runs exactly once.
CREATE TABLE palmpay.change_requests (
    request_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    palm_pay_id TEXT,
    reason TEXT NOT NULL,
    args TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'executed', 'rejected', 'expired', 'failed')),
    decided_by TEXT,
    decided_at DOUBLE PRECISION,
    result TEXT,
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE INDEX change_requests_by_status ON palmpay.change_requests (status, requested_at);

-- Idempotency: what the first request asked for (keyed digest, no plaintext), so a replay of its
-- key with another body is refused instead of answered with the first payment.
ALTER TABLE palmpay.payments ADD COLUMN fingerprint TEXT;

INSERT INTO palmpay.schema_version (version, applied_at) VALUES (3, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
