"""Retention of a revoked link's PII (POPIA), and inputs that used to slip through."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payops.palmpay import PalmPayError
from payops.palmpay.money import MoneyError, to_cents

ALICE, BOB = "operator:a11ce0000001", "operator:b0b000000002"


@pytest.mark.parametrize("amount", ["３０００", "３0", "٣٠", "1０.00"])
def test_full_width_and_other_non_ascii_digits_are_refused_as_amounts(service, enroll, amount):
    _view, ref, _ = enroll()
    with pytest.raises(MoneyError):
        to_cents(amount)
    with pytest.raises(PalmPayError) as refused:
        service.pay(ref, amount, "T1", True, 0.99)
    assert refused.value.code == "PALM_PAY_INVALID_INPUT"
    assert service.rail.charges == {}


def test_a_user_cannot_enrol_two_palms_without_naming_both_hands(service, enroll):
    enroll(user_id="u1", hand=None)
    for second in (None, "left"):
        with pytest.raises(PalmPayError) as refused:
            enroll(user_id="u1", hand=second)
        assert refused.value.code == "PALM_PAY_PALM_LIMIT"
    enroll(user_id="u2", hand="left")
    with pytest.raises(PalmPayError):
        enroll(user_id="u2", hand=None)
    enroll(user_id="u2", hand="right")


def test_a_revoked_links_pii_is_erased_after_the_retention_period_leaving_the_masked_trail(service, enroll, clock):
    view, ref, proxy = enroll()
    kept, kept_ref, _ = enroll()
    service.pay(ref, 10, "T1", True, 0.99)
    service.revoke(view.palm_pay_id, ALICE, approved_by=BOB)
    clock.advance(timedelta(seconds=service.options.pii_retention_s - 60))
    assert service.erase_revoked_pii() == 0  # not yet
    clock.advance(timedelta(seconds=120))
    assert service.erase_revoked_pii() == 1
    assert service.erase_revoked_pii() == 0  # once
    with service.store.read() as tx:
        ((template_ct, proxy_ct, template_index, proxy_index),) = tx.c.execute(
            "SELECT template_ct, proxy_ct, template_index, proxy_index FROM palm_pay_links WHERE palm_pay_id = ?",
            (view.palm_pay_id,)).fetchall()
    assert bytes(template_ct) == bytes(proxy_ct) == bytes(template_index) == bytes(proxy_index) == b""
    shown = service.show(view.palm_pay_id)
    assert shown.link_status == "revoked" and shown.payshap_proxy == view.payshap_proxy  # the mask stays
    assert [e.action for e in service.audit_log(view.palm_pay_id)][-1] == "erase_pii"
    assert service.links_for_proxy(proxy, "phone") == []
    # The live link is untouched, and a key rotation skips the erased row.
    assert service.pay(kept_ref, 5, "T1", True, 0.99).status == "completed"
    service.rotate_key()
    assert service.reencrypt_step() == 1
    assert service.show(kept.palm_pay_id).link_status == "active"


def test_the_maintenance_round_erases_pii_past_its_retention_period(service, enroll, clock):
    from payops.palmpay.settlement import run_maintenance

    view, _ref, _ = enroll()
    service.revoke(view.palm_pay_id, ALICE, approved_by=BOB)
    assert run_maintenance(service).erased_pii == 0
    clock.advance(timedelta(seconds=service.options.pii_retention_s + 1))
    report = run_maintenance(service)
    assert report.erased_pii == 1 and "erased the PII of 1 revoked link(s)" in report.summary()
