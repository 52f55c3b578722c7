"""The two-person rule, payment fingerprints and PII retention on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pg_helpers import PALM_SPEC

from payops.palmpay import DevOtpSender, ManualClock, PalmPayError, PalmPayOptions, PalmPayService

pytestmark = pytest.mark.postgres

ALICE, BOB, CAROL = "operator:a11ce0000001", "operator:b0b000000002", "operator:ca401000003a"
REF = "tmpl-pg-two-person-0001"


@pytest.fixture
def pg_palm(pg_dsn, tmp_path):
    otp = DevOtpSender()
    clock = ManualClock(datetime(2025, 6, 2, 12, 0, tzinfo=ZoneInfo("Africa/Johannesburg")))
    options = PalmPayOptions(state_dir=tmp_path, spec_path=PALM_SPEC, database_url=pg_dsn)
    service = PalmPayService(options, clock=clock, verification=otp)
    view, delivery = service.create_link("u1", REF, None, "0821234321", "phone", 5000, 3000)
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    yield service, view.palm_pay_id, clock
    service.close()


def test_two_operators_approving_one_revocation_at_once_run_it_once_on_postgres(pg_palm):
    service, link_id, _clock = pg_palm
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=link_id, reason="lost phone")
    with pytest.raises(PalmPayError) as own:
        service.approve_request(request.request_id, approved_by=ALICE)
    assert own.value.code == "PALM_PAY_NOT_AUTHORISED"
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve(who: str) -> None:
        barrier.wait()
        try:
            outcomes.append(service.approve_request(request.request_id, approved_by=who).status)
        except PalmPayError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(who,)) for who in (BOB, CAROL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["PALM_PAY_REQUEST_NOT_PENDING", "executed"]
    assert service.show(link_id).link_status == "revoked"
    assert sum(1 for e in service.audit_log(link_id) if e.action == "revoke" and e.outcome == "applied") == 1


def test_a_replay_with_another_terminal_is_a_conflict_on_postgres(pg_palm):
    service, _link_id, _clock = pg_palm
    service.pay(REF, 20, "T1", True, 0.99, idempotency_key="k1:till-0001")
    assert service.pay(REF, 20, "T1", True, 0.99, idempotency_key="k1:till-0001").replayed
    with pytest.raises(PalmPayError) as conflict:
        service.pay(REF, 20, "T2", True, 0.99, idempotency_key="k1:till-0001")
    assert conflict.value.code == "PALM_PAY_IDEMPOTENCY_CONFLICT"


def test_a_revoked_links_pii_is_erased_after_retention_on_postgres(pg_palm):
    service, link_id, clock = pg_palm
    service.revoke(link_id, ALICE, approved_by=BOB)
    clock.advance(timedelta(seconds=service.options.pii_retention_s + 1))
    assert service.erase_revoked_pii() == 1
    with service.store.read() as tx:
        ((size,),) = tx.c.execute("SELECT length(template_ct) + length(proxy_ct) FROM palm_pay_links").fetchall()
    assert size == 0 and service.show(link_id).payshap_proxy == "******4321"
