"""Pure pieces: money, rules, clocks, schema versioning."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from payops.palmpay import PalmPayError
from payops.palmpay.clock import clock_epoch
from payops.palmpay.money import MoneyError, cents_str, from_cents, to_cents
from payops.palmpay.policy import decide_payment, fraud_suspension_due, local_day, match_accepted
from payops.palmpay.store import SCHEMA_VERSION, PalmPayStore


@pytest.mark.parametrize(
    "value, cents", [(Decimal("12.50"), 1250), ("0.01", 1), (5000, 500000), (Decimal("1E+2"), 10000), ("-3", -300)]
)
def test_to_cents(value, cents):
    assert to_cents(value) == cents


@pytest.mark.parametrize("value", [1.5, True, "1.001", "NaN", "Infinity", "ten", Decimal("1e20")])
def test_to_cents_refuses(value):
    with pytest.raises(MoneyError):
        to_cents(value)


def test_cents_round_trip():
    assert from_cents(1250) == Decimal("12.50") and cents_str(1250) == "12.50" and cents_str(5) == "0.05"


def _decide(status="active", spent=0, reserved=0, daily=100_00, per_txn=50_00, amount=10_00):
    return decide_payment(
        link_status=status,
        spent_cents=spent,
        reserved_cents=reserved,
        daily_limit_cents=daily,
        transaction_limit_cents=per_txn,
        amount_cents=amount,
    )


@pytest.mark.parametrize(
    "kwargs, refusal, resolved",
    [
        (dict(), None, True),
        (dict(status="suspended"), "PALM_PAY_LINK_INACTIVE", False),
        (dict(status="pending_verification"), "PALM_PAY_LINK_INACTIVE", False),
        (dict(spent=100_00), "PALM_PAY_DAILY_LIMIT", False),
        (dict(spent=60_00, reserved=40_00), "PALM_PAY_DAILY_LIMIT", False),
        (dict(amount=50_01), "PALM_PAY_TRANSACTION_LIMIT", True),
        (dict(amount=50_00), None, True),
        (dict(spent=90_00, amount=10_01), "PALM_PAY_DAILY_LIMIT", True),
        (dict(spent=90_00, amount=10_00), None, True),
        (dict(spent=80_00, reserved=10_00, amount=10_01), "PALM_PAY_DAILY_LIMIT", True),
    ],
)
def test_decide_payment(kwargs, refusal, resolved):
    decision = _decide(**kwargs)
    assert (decision.refusal, decision.resolved) == (refusal, resolved)


def test_fraud_window_is_half_open():
    assert fraud_suspension_due([0, 100, 299], 299, 300, 3)
    assert not fraud_suspension_due([0, 100, 300], 300, 300, 3)  # the first is exactly 5 minutes old
    assert not fraud_suspension_due([100, 299], 299, 300, 3)


def test_match_threshold_is_strict():
    assert not match_accepted(0.95, 0.95) and match_accepted(0.950001, 0.95)


def test_local_day_uses_the_zone():
    instant = datetime(2025, 6, 2, 22, 30, tzinfo=UTC)
    assert local_day(instant, ZoneInfo("Africa/Johannesburg")) == "2025-06-03"
    assert local_day(instant.timestamp(), ZoneInfo("America/New_York")) == "2025-06-02"


def test_clocks_may_return_epoch_or_aware_datetime_but_not_naive():
    assert clock_epoch(lambda: 1_750_000_000.5) == 1_750_000_000.5
    aware = datetime(2025, 6, 2, tzinfo=UTC)
    assert clock_epoch(lambda: aware) == aware.timestamp()
    with pytest.raises(ValueError, match="naive"):
        clock_epoch(lambda: datetime(2025, 6, 2))


def test_service_accepts_an_epoch_clock(make_service, otp):
    now = [datetime(2025, 6, 2, 10, tzinfo=UTC).timestamp()]
    service = make_service(clock_=lambda: now[0])
    view, delivery = service.create_link("u1", "tmpl-epoch-clock", None, "0821234321", "phone")
    now[0] += 25 * 3600
    with pytest.raises(PalmPayError, match="PALM_PAY_VERIFICATION_EXPIRED"):
        service.verify(view.palm_pay_id, otp.code_for(delivery))


def test_schema_is_versioned_and_reopening_is_idempotent(tmp_path):
    store = PalmPayStore(tmp_path / "p.db")
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    again = PalmPayStore(tmp_path / "p.db")
    assert again.schema_version() == SCHEMA_VERSION
    with again.read() as tx:
        rows = tx.c.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
        mode = tx.c.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == SCHEMA_VERSION and mode == "wal"  # one row per migration, none applied twice
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    store = PalmPayStore(tmp_path / "p.db")
    with store.write() as tx:
        tx.c.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(RuntimeError, match="newer than this code"):
        PalmPayStore(tmp_path / "p.db")


def test_attestation_tables_come_from_the_migrations_not_from_first_use(tmp_path):
    store = PalmPayStore(tmp_path / "p.db")
    with store.read() as tx:
        tables = {r[0] for r in tx.c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        key_state = {r[1] for r in tx.c.execute("PRAGMA table_info(key_state)")}
    store.close()
    assert {"palm_terminal_keys", "palm_scan_nonces"} <= tables
    assert {"index_key_id", "otp_key_id"} <= key_state


def test_a_database_whose_attestation_tables_were_made_on_first_use_migrates(tmp_path):
    import sqlite3

    from payops.palmpay import store as store_module

    path = tmp_path / "p.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for version, statements in store_module.MIGRATIONS[:3]:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 'then')", (version,))
    conn.execute("CREATE TABLE palm_terminal_keys (terminal_id TEXT PRIMARY KEY, public_key TEXT NOT NULL,"
                 " fingerprint TEXT NOT NULL, registered_at DOUBLE PRECISION NOT NULL, registered_by TEXT NOT NULL,"
                 " revoked_at DOUBLE PRECISION, revoked_by TEXT)")
    conn.commit()
    conn.close()
    store = PalmPayStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_attestation_creates_no_tables_of_its_own():
    import inspect

    from payops.palmpay import attestation

    assert "CREATE TABLE" not in inspect.getsource(attestation)
