"""Settlement, the maintenance lock and terminal attestation on PostgreSQL."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_helpers import palm_service

from payops.palm_jobs import MaintenanceLocked, maintain_once, maintenance_lock
from payops.palmpay import DevOtpSender, PalmPayError, RailResult, RailTimeout
from payops.palmpay.attestation import sign_scan
from payops.settings import Settings

pytestmark = pytest.mark.postgres
REF = "tmpl-pg-ops-000001"


class TimeoutRail:
    def initiate_payment(self, request):
        raise RailTimeout("GATEWAY_TIMEOUT")

    def payment_status(self, idempotency_key):
        return RailResult("pending")


def _link(service, otp) -> str:
    view, delivery = service.create_link("u1", REF, None, "0821234321", "phone", 5000, 5000)
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    return view.palm_pay_id


def test_signed_scans_pay_once_and_replays_are_refused_on_postgres(pg_dsn, tmp_path):
    otp = DevOtpSender()
    with palm_service(pg_dsn, str(tmp_path), verification=otp) as service:
        link_id = _link(service, otp)
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        service.attestation.register("T1", base64.b64encode(raw).decode(), actor="operator:k1")
        scan = sign_scan(key, terminal_id="T1", palm_template_ref=REF, liveness_passed=True, match_score=0.99,
                         amount="100", nonce=secrets.token_urlsafe(16), ts=int(service.clock().timestamp()))
        assert service.pay(REF, "100", "T1", True, 0.99, "pay-1", attestation=scan,
                           require_attestation=True).status == "completed"
        with pytest.raises(PalmPayError, match="PALM_PAY_ATTESTATION_REPLAYED"):
            service.pay(REF, "100", "T1", True, 0.99, "pay-2", attestation=scan, require_attestation=True)
        with pytest.raises(PalmPayError, match="PALM_PAY_ATTESTATION_REQUIRED"):
            service.pay(REF, "100", "T1", True, 0.99, "pay-3", require_attestation=True)
        assert service.show(link_id).daily_spent == 100


def test_an_overdue_pending_payment_is_released_under_the_advisory_lock(pg_dsn, tmp_path):
    otp = DevOtpSender()
    settings = Settings(state_dir=tmp_path, database_url=pg_dsn)
    with palm_service(pg_dsn, str(tmp_path), verification=otp, rail=TimeoutRail()) as service:
        link_id = _link(service, otp)
        assert service.pay(REF, "5000", "T1", True, 0.99).status == "pending"
        service.options = service.options.with_(reconcile_grace_s=0.0, max_pending_age_s=0.0)
        with maintenance_lock(settings), pytest.raises(MaintenanceLocked):
            maintain_once(settings, service)
        report = maintain_once(settings, service)
        assert report.reconcile.released_overdue == 1 and service.show(link_id).reserved == 0
