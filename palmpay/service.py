"""PalmPayService: the palm-pay backend's API (agent tools, CLI and HTTP call this).

One class, one use case per module, over the wiring and shared steps of `ServiceCore`
(service_core.py):

    enrolment.py        create_link, verify, resend_otp, verification expiry
    payments.py         pay: attestation, liveness, match, limits, the rail
    settlement.py       reconcile and settling pending payments (and run_maintenance)
    administration.py   suspend, reactivate, revoke
    rotation.py         rotate_key, rotate_index_root, and the rounds' re-encryption, re-indexing, retirement
    change_requests.py  the two-person rule: request, approve, reject
    retention.py        erasing a revoked link's PII after its retention period
    reads.py            links, events and logs, masked

Every operation decides with the pure rules in `policy`, then writes the state change,
its audit entry and its events in one write transaction; refusals are committed before
they are raised as `PalmPayError`.
"""

from __future__ import annotations

from .change_requests import ChangeRequestsMixin
from .enrolment import EnrolmentMixin
from .options import PalmPayOptions
from .payments import PaymentsMixin
from .retention import RetentionMixin
from .service_core import PROXY_FIELD, TEMPLATE_FIELD

__all__ = ["PROXY_FIELD", "RECONCILE_GRACE_S", "TEMPLATE_FIELD", "PalmPayService"]

# Default of PalmPayOptions.reconcile_grace_s, kept importable for callers and tests.
RECONCILE_GRACE_S = PalmPayOptions.reconcile_grace_s


class PalmPayService(EnrolmentMixin, PaymentsMixin, ChangeRequestsMixin, RetentionMixin):
    """The palm-pay backend: build it with `PalmPayOptions` (and optionally a clock, rail, OTP sender, spec)."""
