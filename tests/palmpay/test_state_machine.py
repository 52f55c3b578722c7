"""Random operation sequences (hypothesis): no illegal transition, no limit ever exceeded,
the daily counter resets at local midnight, also across a DST change."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

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
# Evenings before the two DST changes of 2025 in New York, so sequences cross midnight and the change.
STARTS = [datetime(2025, 3, 8, 21, 0, tzinfo=NEW_YORK), datetime(2025, 11, 1, 21, 0, tzinfo=NEW_YORK)]
STEPS = [timedelta(minutes=1), timedelta(minutes=7), timedelta(hours=1), timedelta(hours=3), timedelta(hours=10)]


class PalmPayMachine(RuleBasedStateMachine):
    links = Bundle("links")

    @initialize(
        target=links,
        start=st.sampled_from(STARTS),
        seed=st.integers(0, 2**16),
        daily=st.integers(0, 300),
        per_txn=st.integers(0, 200),
    )
    def boot(self, start: datetime, seed: int, daily: int, per_txn: int):
        self.dir = Path(tempfile.mkdtemp(prefix="palmpay-sm-"))
        self.clock = ManualClock(start)
        self.otp = DevOtpSender()
        rail = SimulatedPayShapRail(
            SimulatedRailConfig(decline_rate=0.05, transient_rate=0.1, timeout_rate=0.1, seed=seed)
        )
        options = PalmPayOptions(
            state_dir=self.dir,
            spec_path=SPEC_PATH,
            timezone="America/New_York",
            rail_retry=RailRetryPolicy(max_attempts=2, initial_wait_s=0.0),
        )
        self.service = PalmPayService(options, clock=self.clock, rail=rail, verification=self.otp, sleep=lambda _: None)
        self.refs: dict[str, str] = {}
        self.deliveries: dict[str, str] = {}
        self.n = 0
        # Every run starts with two verified palms of one customer, so payments run from step one.
        made = []
        for hand in ("left", "right"):
            self.n += 1
            ref = f"tmpl-sm-{self.n:05d}-seeded"
            view, delivery = self.service.create_link("u0", ref, hand, f"0831{self.n:06d}", "phone", daily, per_txn)
            self.service.verify(view.palm_pay_id, self.otp.code_for(delivery))
            self.refs[view.palm_pay_id] = ref
            self.deliveries[view.palm_pay_id] = delivery
            made.append(view.palm_pay_id)
        return multiple(*made)

    def teardown(self) -> None:
        if hasattr(self, "service"):
            self.service.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- operations -------------------------------------------------------------------

    @rule(
        target=links,
        user=st.sampled_from(["u1", "u2", "u3"]),
        hand=st.sampled_from([None, "left", "right"]),
        daily=st.integers(0, 200),
        per_txn=st.integers(0, 150),
        reuse_palm=st.booleans(),
        verify_now=st.sampled_from([True, True, False]),
    )
    def create(self, user, hand, daily, per_txn, reuse_palm, verify_now):
        if reuse_palm and self.refs:
            ref = next(iter(self.refs.values()))
        else:
            self.n += 1
            ref = f"tmpl-sm-{self.n:05d}-c0ffee"
        try:
            view, delivery = self.service.create_link(user, ref, hand, f"0830{self.n:06d}", "phone", daily, per_txn)
        except PalmPayError as exc:
            assert exc.code in {"PALM_PAY_DUPLICATE_PALM", "PALM_PAY_PALM_LIMIT"}
            return multiple()
        assert view.link_status == SPEC.initial_state
        self.refs[view.palm_pay_id] = ref
        self.deliveries[view.palm_pay_id] = delivery
        if verify_now:  # most links get verified at once, so payments get exercised
            assert self.service.verify(view.palm_pay_id, self.otp.code_for(delivery)).link_status == "active"
        return view.palm_pay_id

    @rule(link=links, correct=st.booleans())
    def verify(self, link, correct):
        before = self.service.show(link).link_status
        code = self.otp.code_for(self.deliveries[link]) or "000000"
        try:
            after = self.service.verify(link, code if correct else f"{(int(code) + 1) % 10**6:06d}")
        except IllegalTransitionError:
            assert before != "pending_verification" or not SPEC.can_transition(before, "active")
            return
        except PalmPayError as exc:
            assert exc.code in {
                "PALM_PAY_OTP_INVALID",
                "PALM_PAY_OTP_EXPIRED",
                "PALM_PAY_OTP_ATTEMPTS_EXCEEDED",
                "PALM_PAY_VERIFICATION_EXPIRED",
            }
            return
        assert correct and before == "pending_verification" and after.link_status == "active"

    @rule(link=links)
    def resend(self, link):
        with contextlib.suppress(PalmPayError):
            self.deliveries[link] = self.service.resend_otp(link)

    @rule(
        link=links,
        cents=st.integers(1, 12_000),
        score=st.sampled_from([0.5, 0.96, 0.99]),
        liveness=st.sampled_from([True, True, True, False]),
    )
    def pay(self, link, cents, score, liveness):
        try:
            result = self.service.pay(self.refs[link], Decimal(cents) / 100, "T1", liveness, score)
        except PalmPayError as exc:
            event(f"pay refused: {exc.code}")
            assert exc.fallback == "card"
            assert exc.code in {
                "PALM_PAY_SPOOF_DETECTED",
                "PALM_PAY_NOT_REGISTERED",
                "PALM_PAY_LINK_INACTIVE",
                "PALM_PAY_DAILY_LIMIT",
                "PALM_PAY_TRANSACTION_LIMIT",
            }
            return
        event(f"pay {result.status}")
        assert liveness and score > 0.95
        assert result.palm_pay_id in self.refs

    @rule(link=links, amounts=st.lists(st.integers(1, 8_000), min_size=1, max_size=6))
    def pay_burst(self, link, amounts):
        """Several genuine scans in a row on one palm: drives links into their limits."""
        for cents in amounts:
            self.pay(link, cents, 0.99, True)

    @rule(op=st.sampled_from(["suspend", "reactivate", "revoke"]), link=links)
    def administer(self, op, link):
        before = self.service.show(link).link_status
        target = {"suspend": "suspended", "reactivate": "active", "revoke": "revoked"}[op]
        try:
            if op == "suspend":
                after = self.service.suspend(link, "random test", "operator:a11ce0000001")
            elif op == "reactivate":
                after = self.service.reactivate(link, "operator:a11ce0000001", approved_by="operator:b0b000000002")
            else:
                after = self.service.revoke(link, "operator:a11ce0000001", approved_by="operator:b0b000000002")
        except IllegalTransitionError:
            legal = SPEC.can_transition(before, target) and (op != "reactivate" or before == "suspended")
            assert not legal, f"{op} refused from {before}"
            return
        assert SPEC.can_transition(before, target) and after.link_status == target

    @rule(step=st.sampled_from(STEPS))
    def time_passes(self, step):
        before = self.clock().astimezone(NEW_YORK)
        after = self.clock.advance(step).astimezone(NEW_YORK)
        if before.date() != after.date():
            event("crossed local midnight")
        if before.utcoffset() != after.utcoffset():
            event("crossed a DST change")

    @rule()
    def expire(self):
        self.service.expire_unverified()

    @rule()
    def reconcile(self):
        self.clock.advance(RECONCILE_GRACE_S)
        self.service.reconcile()

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def only_spec_transitions_were_applied(self):
        if not hasattr(self, "service"):
            return
        for entry in self.service.audit_log():
            if entry.outcome == "applied" and entry.from_status is not None:
                assert SPEC.can_transition(entry.from_status, entry.to_status), entry
        for view in [v for u in ("u0", "u1", "u2", "u3") for v in self.service.links_for_user(u)]:
            assert view.link_status in SPEC.states

    @invariant()
    def limits_hold_and_counters_match_the_ledger(self):
        if not hasattr(self, "service"):
            return
        today = self.clock().astimezone(NEW_YORK).date().isoformat()
        with self.service.store.read() as tx:
            links = {link.palm_pay_id: link for link in tx.all_links()}
            rows = tx.c.execute(
                "SELECT palm_pay_id, amount_cents, status, spent_day, created_at FROM payments"
            ).fetchall()
        per_day: dict[tuple[str, str], int] = {}
        held: dict[tuple[str, str], int] = {}
        for link_id, cents, status, day, created_at in rows:
            link = links[link_id]
            assert cents <= link.transaction_limit
            # The day a payment counts for is the local date (New York) when it was made.
            assert day == datetime.fromtimestamp(created_at, NEW_YORK).date().isoformat()
            if status == "completed":
                per_day[(link_id, day)] = per_day.get((link_id, day), 0) + cents
            elif status == "pending":
                held[(link_id, day)] = held.get((link_id, day), 0) + cents
        for (link_id, _day), total in per_day.items():
            assert total <= links[link_id].daily_limit
        # The ledger row of each (link, day) is exactly its completed and pending payments.
        with self.service.store.read() as tx:
            ledger = {(r[0], r[1]): (r[3], r[4]) for r in tx.ledger_rows()}
        for key in set(ledger) | set(per_day) | set(held):
            assert ledger.get(key, (0, 0)) == (per_day.get(key, 0), held.get(key, 0)), key
        for link_id in links:
            shown = self.service.show(link_id)
            assert shown.reserved == Decimal(sum(v for (k, _), v in held.items() if k == link_id)) / 100
            spent_today = per_day.get((link_id, today), 0)
            assert shown.daily_spent == Decimal(spent_today) / 100, (link_id, today, shown.daily_spent, spent_today)

    @invariant()
    def never_charged_twice(self):
        if hasattr(self, "service"):
            assert all(n == 1 for n in self.service.rail.charges.values())


PalmPayMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPalmPayStateMachine = PalmPayMachine.TestCase
