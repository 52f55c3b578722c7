"""Random operation sequences with two writers on one database whose clocks are skewed and jump
both ways: no illegal transition, no overrun of any (link, local date) ledger row, and no
writer ever counting a payment on a day its link has already left.

A seeded loop rather than hypothesis: 10,000 sequences must fit in a test run, so each one is a
fresh link in one shared database instead of a fresh database. PAYOPS_LEDGER_SEQUENCES changes
the count (e.g. 100 for a quick look); the seed is printed on failure.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from payops.palmpay import (
    DevOtpSender,
    IllegalTransitionError,
    ManualClock,
    PalmPayError,
    PalmPayOptions,
    PalmPayService,
    RailRetryPolicy,
    SimulatedPayShapRail,
    SimulatedRailConfig,
    load_spec,
)
from payops.palmpay.service import RECONCILE_GRACE_S

SPEC_PATH = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
SPEC = load_spec(SPEC_PATH)
NEW_YORK = ZoneInfo("America/New_York")
SEQUENCES = int(os.environ.get("PAYOPS_LEDGER_SEQUENCES", "10000"))
OPS_PER_SEQUENCE = 12
SEED = 15
# Minutes before a local midnight, on ordinary days and on both DST changes of 2025 in New York.
STARTS = [datetime(2025, 3, 8, 23, 58, tzinfo=NEW_YORK), datetime(2025, 11, 1, 23, 58, tzinfo=NEW_YORK),
          datetime(2025, 6, 2, 23, 58, tzinfo=NEW_YORK), datetime(2025, 12, 31, 23, 58, tzinfo=NEW_YORK)]
JUMPS = [timedelta(seconds=1), timedelta(seconds=2), timedelta(minutes=7), timedelta(hours=1), timedelta(hours=12),
         -timedelta(seconds=2), -timedelta(minutes=7), -timedelta(hours=1), -timedelta(hours=12)]
# Weighted: mostly payments and clock moves; revocation is permanent, so it comes rarely.
OPERATORS = ("operator:a11ce0000001", "operator:b0b000000002")  # one per writer: the two-person rule
OPS = ["pay"] * 12 + ["jump"] * 4 + ["tick"] * 2 + ["reconcile"] * 2 + ["suspend", "reactivate"] * 2 + ["revoke"]


def test_ten_thousand_random_sequences_with_skewed_jumping_clocks_find_no_overrun(tmp_path):
    rng = random.Random(SEED)
    otp = DevOtpSender()
    # One rail for both writers: it is the bank's, and either writer may reconcile the other's payments.
    rail = SimulatedPayShapRail(SimulatedRailConfig(decline_rate=0.05, timeout_rate=0.1, seed=SEED))
    clocks = [ManualClock(STARTS[0]), ManualClock(STARTS[0])]
    options = PalmPayOptions(state_dir=tmp_path, spec_path=SPEC_PATH, timezone="America/New_York",
                             rail_retry=RailRetryPolicy(max_attempts=1, initial_wait_s=0.0))
    writers = [PalmPayService(options, clock=c, rail=rail, verification=otp, sleep=lambda _s: None) for c in clocks]
    counts: Counter[str] = Counter()  # operations
    seen: Counter[str] = Counter()  # outcomes
    try:
        for n in range(SEQUENCES):
            _run_sequence(n, rng, writers, clocks, otp, counts, seen)
        with writers[0].store.read() as tx:
            audit = tx.audit_entries()
            ledger = tx.ledger_rows()
            limits = {link.palm_pay_id: link.daily_limit for link in tx.all_links()}
            completed = tx.completed_by_link_and_day()
            pending = tx.c.execute(
                "SELECT palm_pay_id, spent_day, SUM(amount_cents) FROM payments WHERE status = 'pending'"
                " GROUP BY palm_pay_id, spent_day").fetchall()
    finally:
        for writer in writers:
            writer.close()
    illegal = [e for e in audit if e.outcome == "applied" and e.from_status is not None
               and not SPEC.can_transition(e.from_status, e.to_status)]
    spent = {(link, day): int(total) for link, day, total, _ in completed}
    held = {(link, day): int(total) for link, day, total in pending}
    overruns = [(link, day) for link, day in set(spent) | set(held)
                if spent.get((link, day), 0) + held.get((link, day), 0) > limits[link]]
    drift = [(r[0], r[1]) for r in ledger if (r[3], r[4]) != (spent.get((r[0], r[1]), 0), held.get((r[0], r[1]), 0))]
    print(f"\n{SEQUENCES} sequences, {sum(counts.values())} operations {dict(counts)}, outcomes {dict(seen)}; "
          f"{len(illegal)} illegal transitions, {len(overruns)} limit overruns, "
          f"{seen['backwards day']} backwards days, {len(drift)} ledger rows off")
    assert not illegal and not overruns and not drift and seen["backwards day"] == 0
    assert seen["pay completed"] > SEQUENCES and seen["pay refused PALM_PAY_DAILY_LIMIT"] > SEQUENCES // 10


def _run_sequence(n: int, rng: random.Random, writers: list[PalmPayService], clocks: list[ManualClock],
                  otp: DevOtpSender, counts: Counter[str], seen: Counter[str]) -> None:
    start = rng.choice(STARTS) + timedelta(seconds=rng.randint(0, 240))
    skew = timedelta(seconds=rng.choice([-2, -1, 0, 1, 2]))
    clocks[0].set(start)
    clocks[1].set(start + skew)
    ref = f"tmpl-prop-{n:06d}-a1b2"
    view, delivery = writers[0].create_link(f"user-{n}", ref, None, f"083{n:07d}", "phone",
                                            rng.choice([50, 100, 200]), rng.choice([30, 60, 200]))
    link_id = writers[0].verify(view.palm_pay_id, otp.code_for(delivery)).palm_pay_id
    days: list[str] = []
    for _ in range(OPS_PER_SEQUENCE):
        op = rng.choice(OPS)
        w = rng.randrange(2)
        writer, clock = writers[w], clocks[w]
        counts[op] += 1
        if op == "pay":
            try:
                result = writer.pay(ref, rng.randint(1, 80), f"T{w}", True, 0.99)
            except PalmPayError as exc:
                seen[f"pay refused {exc.code}"] += 1
                continue
            seen[f"pay {result.status}"] += 1
            with writer.store.read() as tx:
                day = tx.payment(result.payment_id).spent_day
            if days and day < days[-1]:
                seen["backwards day"] += 1
            days.append(day)
        elif op == "jump":
            clock.advance(rng.choice(JUMPS))  # one writer's clock alone: skew grows, either way
        elif op == "tick":
            step = timedelta(minutes=rng.choice([1, 30, 180]))
            for c in clocks:
                c.advance(step)
        elif op == "reconcile":
            clock.advance(RECONCILE_GRACE_S)
            writer.reconcile()
        else:
            _administer(op, writers, w, link_id, seen)


def _administer(op: str, writers: list[PalmPayService], w: int, link_id: str, seen: Counter[str]) -> None:
    """Operators: one suspends alone; a lift or a revocation is one writer's request, the other's approval."""
    try:
        if op == "suspend":
            writers[w].suspend(link_id, "property test", OPERATORS[w])
        else:
            request = writers[w].request_change(op, requested_by=OPERATORS[w], palm_pay_id=link_id)
            writers[1 - w].approve_request(request.request_id, approved_by=OPERATORS[1 - w])
    except IllegalTransitionError:
        seen[f"{op} refused"] += 1
    except PalmPayError as exc:
        assert exc.code == "PALM_PAY_REQUEST_EXPIRED", exc.code  # the clocks jump past a request's expiry
        seen[f"{op} request expired"] += 1
