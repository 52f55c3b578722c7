"""Enrolment rules: one proxy per palm, two palms per user, OTP verification, 24 h expiry."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest

from payops.palmpay import DevOtpSender, IllegalTransitionError, PalmPayError


def _codes(exc_info) -> str:
    return exc_info.value.code


def test_create_link_is_pending_and_sends_an_otp(service, otp, clock):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", "left", "082 123 4321", "phone", bank="FNB")
    assert view.link_status == "pending_verification"
    assert view.payshap_proxy == "******4321"
    assert view.palm_template_ref == "******aaaa"
    assert view.verified_at is None and view.linked_at is None
    assert view.daily_limit == Decimal("5000") and view.transaction_limit == Decimal("3000")
    assert view.daily_spent == Decimal("0")
    code = otp.code_for(delivery)
    assert code is not None and len(code) == 6 and code.isdigit()


def test_correct_otp_activates_and_stamps_times(service, otp, clock):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", "left", "0821234321", "phone")
    clock.advance(timedelta(minutes=3))
    active = service.verify(view.palm_pay_id, otp.code_for(delivery))
    assert active.link_status == "active"
    assert active.verified_at == clock() and active.linked_at == clock()


def test_wrong_otp_is_refused_and_attempts_are_limited(service, otp):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", None, "0821234321", "phone")
    code = otp.code_for(delivery)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(service.options.otp_max_attempts):
        with pytest.raises(PalmPayError) as err:
            service.verify(view.palm_pay_id, wrong)
        assert err.value.code == "PALM_PAY_OTP_INVALID"
    with pytest.raises(PalmPayError) as err:
        service.verify(view.palm_pay_id, code)  # even the right code is void now
    assert err.value.code == "PALM_PAY_OTP_ATTEMPTS_EXCEEDED"
    assert service.show(view.palm_pay_id).link_status == "pending_verification"
    # A new code restores the chance to verify.
    delivery2 = service.resend_otp(view.palm_pay_id)
    assert service.verify(view.palm_pay_id, otp.code_for(delivery2)).link_status == "active"


def test_otp_expires_and_resends_are_capped(service, otp, clock):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", None, "0821234321", "phone")
    clock.advance(service.options.otp_ttl_s)
    with pytest.raises(PalmPayError) as err:
        service.verify(view.palm_pay_id, otp.code_for(delivery))
    assert err.value.code == "PALM_PAY_OTP_EXPIRED"
    for _ in range(service.options.otp_max_resends):
        service.resend_otp(view.palm_pay_id)
    with pytest.raises(PalmPayError) as err:
        service.resend_otp(view.palm_pay_id)
    assert err.value.code == "PALM_PAY_OTP_RESEND_LIMIT"


def test_old_code_is_void_after_a_resend(service, otp):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", None, "0821234321", "phone")
    old = otp.code_for(delivery)
    new = otp.code_for(service.resend_otp(view.palm_pay_id))
    if old != new:
        with pytest.raises(PalmPayError):
            service.verify(view.palm_pay_id, old)
    assert service.verify(view.palm_pay_id, new).link_status == "active"


def test_otp_is_stored_only_as_a_keyed_hash(service, otp):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", None, "0821234321", "phone")
    with service.store.read() as tx:
        mac, *_ = tx.otp(view.palm_pay_id)
    code = otp.code_for(delivery)
    assert len(mac) == 32 and code.encode() not in mac
    import hashlib

    assert mac != hashlib.sha256(code.encode()).digest()


def test_dev_sender_never_logs_the_code(caplog):
    sender = DevOtpSender()
    with caplog.at_level(logging.DEBUG):
        delivery = sender.send_otp(palm_pay_id="pp_1", destination="0821234321", proxy_type="phone", code="493817")
    assert "493817" not in caplog.text and "0821234321" not in caplog.text
    assert "******4321" in caplog.text and delivery in caplog.text


def test_verification_expires_after_24_hours(service, otp, clock):
    view, delivery = service.create_link("u1", "tmpl-0001-aaaaaaaa", None, "0821234321", "phone")
    clock.advance(timedelta(hours=24) - timedelta(seconds=1))
    assert service.expire_unverified() == 0
    clock.advance(timedelta(seconds=1))
    with pytest.raises(PalmPayError) as err:
        service.verify(view.palm_pay_id, otp.code_for(delivery))
    assert (err.value.code, err.value.status) == ("PALM_PAY_VERIFICATION_EXPIRED", 410)
    assert service.show(view.palm_pay_id).link_status == "revoked"


def test_expire_unverified_revokes_only_stale_pending_links(service, enroll, clock):
    stale, _, _ = enroll(verify=False)
    clock.advance(timedelta(hours=12))
    fresh, _, _ = enroll(verify=False)
    active, _, _ = enroll()
    clock.advance(timedelta(hours=12, seconds=1))
    assert service.expire_unverified() == 1
    assert service.show(stale.palm_pay_id).link_status == "revoked"
    assert service.show(fresh.palm_pay_id).link_status == "pending_verification"
    assert service.show(active.palm_pay_id).link_status == "active"
    assert [e.name for e in service.consume() if e.name == "palm_pay.link.revoked"] == ["palm_pay.link.revoked"]


def test_one_proxy_per_palm(service, enroll):
    _, ref, _ = enroll(user_id="u1")
    for user in ("u1", "u2"):
        with pytest.raises(PalmPayError) as err:
            service.create_link(user, ref, None, "0839999999", "phone")
        assert (err.value.code, err.value.status) == ("PALM_PAY_DUPLICATE_PALM", 409)


def test_duplicate_check_covers_pending_links_and_frees_after_revoke(service, enroll):
    view, ref, _ = enroll(verify=False)
    with pytest.raises(PalmPayError, match="PALM_PAY_DUPLICATE_PALM"):
        service.create_link("u9", ref, None, "0839999999", "phone")
    service.revoke(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    again, _ = service.create_link("u9", ref, None, "0839999999", "phone")
    assert again.link_status == "pending_verification"


def test_a_stale_unverified_enrolment_does_not_block_re_enrolment(service, enroll, clock):
    view, ref, _ = enroll(verify=False)
    clock.advance(timedelta(hours=25))
    again, _ = service.create_link("u1", ref, None, "0839999999", "phone")
    assert again.palm_pay_id != view.palm_pay_id
    assert service.show(view.palm_pay_id).link_status == "revoked"


def test_at_most_two_palms_per_user_one_per_hand(service, enroll):
    enroll(user_id="u1", hand="left")
    with pytest.raises(PalmPayError) as err:
        enroll(user_id="u1", hand="left")
    assert err.value.code == "PALM_PAY_PALM_LIMIT"
    enroll(user_id="u1", hand="right")
    with pytest.raises(PalmPayError) as err:
        enroll(user_id="u1", hand=None)
    assert err.value.code == "PALM_PAY_PALM_LIMIT"
    enroll(user_id="u2", hand="left")  # other users are unaffected


def test_a_revoked_palm_frees_its_slot(service, enroll):
    left, _, _ = enroll(user_id="u1", hand="left")
    enroll(user_id="u1", hand="right")
    service.revoke(left.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    enroll(user_id="u1", hand="left")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(payshap_proxy=""), "A payment proxy is required to link to your palm"),
        (dict(payshap_proxy="12ab"), "not a valid phone proxy"),
        (dict(proxy_type="email"), "proxy_type must be one of: phone, account"),
        (dict(palm_hand="middle"), "palm_hand must be one of: left, right"),
        (dict(daily_limit=Decimal("-1")), "Daily limit cannot be negative"),
        (dict(transaction_limit="-0.01"), "Transaction limit cannot be negative"),
        (dict(daily_limit=100.5), "not float"),
        (dict(user_id="  "), "user_id is required"),
        (dict(palm_template_ref="short"), "at least 8 characters"),
    ],
)
def test_invalid_enrolment_input(service, kwargs, message):
    args = dict(
        user_id="u1",
        palm_template_ref="tmpl-0001-aaaaaaaa",
        palm_hand="left",
        payshap_proxy="0821234321",
        proxy_type="phone",
    )
    args.update(kwargs)
    with pytest.raises(PalmPayError) as err:
        service.create_link(**args)
    assert err.value.code == "PALM_PAY_INVALID_INPUT" and err.value.status == 422
    assert message in err.value.message
    assert service.consume() == []  # nothing was created


def test_account_proxies_are_accepted(enroll):
    view, _, _ = enroll(proxy_type="account")
    assert view.proxy_type == "account" and view.payshap_proxy.startswith("******")


def test_verify_never_lifts_a_suspension(service, enroll):
    view, _, _ = enroll()
    service.suspend(view.palm_pay_id, "user request", "operator:a11ce0000001")
    with pytest.raises(IllegalTransitionError):
        service.verify(view.palm_pay_id, "123456")
    assert service.show(view.palm_pay_id).link_status == "suspended"


def test_unknown_link(service):
    with pytest.raises(PalmPayError) as err:
        service.show("pp_missing")
    assert (err.value.code, err.value.status) == ("PALM_PAY_LINK_NOT_FOUND", 404)
