-- 0004: palm-pay's daily limit on a ledger, one row per (link, local date), as palmpay/store.py's
-- SQLite migration 2. The link's own counters kept a single day, so two servers whose clocks
-- straddled midnight reset each other's counter. Payments still lock their link row first, so
-- the ledger rows of one link are written by one transaction at a time.
CREATE TABLE palmpay.daily_ledger (
    palm_pay_id TEXT NOT NULL REFERENCES palmpay.palm_pay_links (palm_pay_id),
    day TEXT NOT NULL,
    limit_cents BIGINT NOT NULL CHECK (limit_cents >= 0),
    spent_cents BIGINT NOT NULL DEFAULT 0 CHECK (spent_cents >= 0),
    reserved_cents BIGINT NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
    PRIMARY KEY (palm_pay_id, day),
    CHECK (spent_cents + reserved_cents <= limit_cents)
);

INSERT INTO palmpay.daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)
SELECT palm_pay_id, spent_day, daily_limit_cents, daily_spent_cents, 0
FROM palmpay.palm_pay_links WHERE spent_day IS NOT NULL;

INSERT INTO palmpay.daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)
SELECT p.palm_pay_id, p.spent_day, MAX(l.daily_limit_cents), 0, SUM(p.amount_cents)
FROM palmpay.payments p JOIN palmpay.palm_pay_links l ON l.palm_pay_id = p.palm_pay_id
WHERE p.status = 'pending'
GROUP BY p.palm_pay_id, p.spent_day
ON CONFLICT (palm_pay_id, day) DO UPDATE SET reserved_cents = excluded.reserved_cents;

INSERT INTO palmpay.schema_version (version, applied_at) VALUES (2, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
