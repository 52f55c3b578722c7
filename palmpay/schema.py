"""The palm-pay schema on SQLite: append-only migrations (storage/migrations/postgres holds the
PostgreSQL twins, one file per SQLite migration, and records the same version numbers)."""

from __future__ import annotations

from .models import REVOKED

SCHEMA_VERSION = 5

# Migrations are append-only: (version, statements). Never edit a released one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE palm_pay_links (
                palm_pay_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                palm_hand TEXT,
                proxy_type TEXT NOT NULL,
                link_status TEXT NOT NULL,
                template_index BLOB NOT NULL,
                template_ct BLOB NOT NULL,
                template_hint TEXT NOT NULL,
                proxy_index BLOB NOT NULL,
                proxy_ct BLOB NOT NULL,
                proxy_hint TEXT NOT NULL,
                bank TEXT,
                daily_limit_cents INTEGER NOT NULL CHECK (daily_limit_cents >= 0),
                transaction_limit_cents INTEGER NOT NULL CHECK (transaction_limit_cents >= 0),
                daily_spent_cents INTEGER NOT NULL DEFAULT 0 CHECK (daily_spent_cents >= 0),
                reserved_cents INTEGER NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
                spent_day TEXT,
                created_at REAL NOT NULL,
                verified_at REAL,
                linked_at REAL,
                status_changed_at REAL NOT NULL,
                status_reason TEXT,
                CHECK (daily_spent_cents + reserved_cents <= daily_limit_cents)
            )""",
            # One live link per palm; a revoked palm may be enrolled again.
            f"CREATE UNIQUE INDEX links_one_live_per_palm ON palm_pay_links(template_index)"
            f" WHERE link_status != '{REVOKED}'",
            "CREATE INDEX links_by_template ON palm_pay_links(template_index, created_at)",
            "CREATE INDEX links_by_proxy ON palm_pay_links(proxy_index)",
            "CREATE INDEX links_by_user ON palm_pay_links(user_id)",
            "CREATE INDEX links_by_status ON palm_pay_links(link_status, created_at)",
            """CREATE TABLE payments (
                payment_id TEXT PRIMARY KEY,
                palm_pay_id TEXT NOT NULL REFERENCES palm_pay_links(palm_pay_id),
                amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
                terminal_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
                spent_day TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                error_code TEXT,
                rail_reference TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX payments_pending ON payments(created_at) WHERE status = 'pending'",
            """CREATE TABLE otp_challenges (
                palm_pay_id TEXT PRIMARY KEY REFERENCES palm_pay_links(palm_pay_id),
                code_mac BLOB NOT NULL,
                expires_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                resends INTEGER NOT NULL DEFAULT 0,
                delivery_id TEXT NOT NULL
            )""",
            """CREATE TABLE match_failures (
                palm_pay_id TEXT NOT NULL,
                ts REAL NOT NULL
            )""",
            "CREATE INDEX match_failures_by_link ON match_failures(palm_pay_id, ts)",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                name TEXT NOT NULL,
                payload TEXT NOT NULL
            )""",
            """CREATE TABLE payment_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                payment_id TEXT NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX payment_events_by_payment ON payment_events(payment_id)",
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                palm_pay_id TEXT,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                from_status TEXT,
                to_status TEXT,
                outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'refused')),
                reason TEXT
            )""",
            "CREATE INDEX audit_by_link ON audit_log(palm_pay_id)",
            """CREATE TABLE access_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                palm_pay_id TEXT NOT NULL,
                field TEXT NOT NULL,
                actor TEXT NOT NULL,
                purpose TEXT NOT NULL
            )""",
            "CREATE INDEX access_by_link ON access_log(palm_pay_id)",
            # Which data key new ciphertexts must use; lets processes notice a rotation.
            """CREATE TABLE key_state (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                active_key_id TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        # The daily limit on a ledger: one row per (link, local date). The link's own counters kept
        # a single day, so two writers whose clocks straddled midnight reset each other's counter.
        # Rows of different days never touch, and the CHECK repeats the invariant per day.
        (
            """CREATE TABLE daily_ledger (
                palm_pay_id TEXT NOT NULL REFERENCES palm_pay_links(palm_pay_id),
                day TEXT NOT NULL,
                limit_cents INTEGER NOT NULL CHECK (limit_cents >= 0),
                spent_cents INTEGER NOT NULL DEFAULT 0 CHECK (spent_cents >= 0),
                reserved_cents INTEGER NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
                PRIMARY KEY (palm_pay_id, day),
                CHECK (spent_cents + reserved_cents <= limit_cents)
            ) WITHOUT ROWID""",  # rows live in the key's b-tree: one structure to write per payment, not two
            # Existing counters and holds move into the ledger on the day they belong to.
            "INSERT INTO daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)"
            " SELECT palm_pay_id, spent_day, daily_limit_cents, daily_spent_cents, 0 FROM palm_pay_links"
            " WHERE spent_day IS NOT NULL",
            "INSERT INTO daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)"
            " SELECT p.palm_pay_id, p.spent_day, MAX(l.daily_limit_cents), 0, SUM(p.amount_cents)"
            " FROM payments p JOIN palm_pay_links l ON l.palm_pay_id = p.palm_pay_id WHERE p.status = 'pending'"
            " GROUP BY p.palm_pay_id, p.spent_day"
            " ON CONFLICT (palm_pay_id, day) DO UPDATE SET reserved_cents = excluded.reserved_cents",
        ),
    ),
    (
        3,
        # The two-person rule: a human-initiated revocation, suspension lift, limit change or key
        # rotation waits here until a second, different operator approves it; it runs once.
        (
            """CREATE TABLE change_requests (
                request_id TEXT PRIMARY KEY,
                action TEXT NOT NULL,
                palm_pay_id TEXT,
                reason TEXT NOT NULL,
                args TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                requested_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'executed', 'rejected', 'expired',
                                                      'failed')),
                decided_by TEXT,
                decided_at REAL,
                result TEXT,
                CHECK (decided_by IS NULL OR decided_by != requested_by)
            )""",
            "CREATE INDEX change_requests_by_status ON change_requests(status, requested_at)",
            # Idempotency: what the first request asked for (keyed digest, no plaintext), so a replay
            # of its key with another body is refused instead of answered with the first payment.
            "ALTER TABLE payments ADD COLUMN fingerprint TEXT",
        ),
    ),
    (
        4,
        # Terminal attestation's registry and single-use scan nonces (attestation.py), which it used to
        # create on first use outside any migration ("IF NOT EXISTS": such a database already has them);
        # and which blind-index root and OTP MAC key the data was written under, so a start with
        # other keys is refused instead of answering NOT_REGISTERED / OTP_INVALID for everything.
        (
            """CREATE TABLE IF NOT EXISTS palm_terminal_keys (
                terminal_id TEXT PRIMARY KEY,
                public_key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                registered_at DOUBLE PRECISION NOT NULL,
                registered_by TEXT NOT NULL,
                revoked_at DOUBLE PRECISION,
                revoked_by TEXT
            )""",
            """CREATE TABLE IF NOT EXISTS palm_scan_nonces (
                terminal_id TEXT NOT NULL,
                nonce TEXT NOT NULL,
                payment_id TEXT,
                seen_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (terminal_id, nonce)
            )""",
            "CREATE INDEX IF NOT EXISTS palm_scan_nonces_by_age ON palm_scan_nonces(seen_at)",
            "ALTER TABLE key_state ADD COLUMN index_key_id TEXT",
            "ALTER TABLE key_state ADD COLUMN otp_key_id TEXT",
        ),
    ),
    (
        5,
        # Key rotation in the background (administration.py, reindexing.py): when the rows last finished
        # moving to the active data key (old keys retire a backup window after that), and the blind-index
        # root's rotation: the previous root, still tried by lookups until every row is re-indexed and the
        # backup window has passed, and the root each row's indexes were computed under.
        (
            "ALTER TABLE key_state ADD COLUMN data_reencrypted_at REAL",
            "ALTER TABLE key_state ADD COLUMN index_prev_key_id TEXT",
            "ALTER TABLE key_state ADD COLUMN index_reindexed_at REAL",
            "ALTER TABLE palm_pay_links ADD COLUMN index_key_id TEXT",
            "UPDATE palm_pay_links SET index_key_id = (SELECT index_key_id FROM key_state WHERE singleton = 1)",
            "CREATE INDEX links_by_index_key ON palm_pay_links(index_key_id)",
        ),
    ),
)
