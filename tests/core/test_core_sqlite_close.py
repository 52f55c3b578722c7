"""Closing a SQLite database while another thread reads it: the close waits, the read finishes, no crash.

CI crashed once with a segmentation fault: at the API's shutdown the console's background decode of
the audit trail was running a query on a connection the lifespan closed (storage/db.py, api/app.py).
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from payops.storage.db import SqliteDatabase


def _db(tmp_path) -> SqliteDatabase:  # type: ignore[no-untyped-def]
    db = SqliteDatabase(tmp_path / "t.db", schema="CREATE TABLE t (x INTEGER);")
    with db.write() as conn:
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    return db


def test_close_waits_for_a_read_in_flight_and_refuses_new_ones(tmp_path) -> None:
    db = _db(tmp_path)
    inside, release, order = threading.Event(), threading.Event(), []

    def reader() -> None:
        with db.read() as conn:
            inside.set()
            release.wait(5)
            order.append(("read", conn.execute("SELECT count(*) FROM t").fetchone()[0]))

    t = threading.Thread(target=reader)
    t.start()
    inside.wait(5)
    closer = threading.Thread(target=lambda: (db.close(), order.append(("closed", None))))
    closer.start()
    closer.join(0.3)
    assert closer.is_alive() and order == []  # close waits while the read runs
    release.set()
    t.join(5)
    closer.join(5)
    assert order == [("read", 1000), ("closed", None)]
    with pytest.raises(sqlite3.ProgrammingError), db.read():
        pass
    db.close()  # twice is harmless


def test_many_readers_and_a_close_never_crash(tmp_path) -> None:
    db = _db(tmp_path)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with db.read() as conn:
                    conn.execute("SELECT sum(x) FROM t").fetchall()
            except sqlite3.ProgrammingError:
                return  # closed: refused cleanly
            except BaseException as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    db.close()
    stop.set()
    for t in threads:
        t.join(5)
    assert errors == []
