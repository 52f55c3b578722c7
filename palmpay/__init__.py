"""Palm-pay backend: palm-to-proxy links, OTP verification, limits, PayShap payments.

Behaviour follows `palm-pay.spec.json`, loaded at run time (see `spec.py`).
Start with `PalmPayService`; refusals are `PalmPayError`.
"""

from .clock import Clock, ManualClock, system_clock
from .errors import IllegalTransitionError, PalmPayError
from .masking import mask_proxy, mask_ref
from .models import (
    AccessLogEntry,
    AuditEntry,
    LinkView,
    OutboxEvent,
    PalmPayLink,
    PaymentEventRecord,
    PaymentResult,
    ReconcileReport,
    RotationReport,
    SealedField,
)
from .options import PalmPayOptions
from .rail import (
    PayShapRail,
    RailPaymentRequest,
    RailResult,
    RailRetryPolicy,
    RailTimeout,
    RailTransientError,
    SimulatedPayShapRail,
    SimulatedRailConfig,
)
from .service import PalmPayService
from .spec import (
    PalmPaySpec,
    SpecError,
    action_permissions,
    allowed_transitions,
    error_table,
    escalation_triggers,
    human_checkpoints,
    load_spec,
)
from .verification import DevOtpSender, Verification

__all__ = [
    "AccessLogEntry",
    "AuditEntry",
    "Clock",
    "DevOtpSender",
    "IllegalTransitionError",
    "LinkView",
    "ManualClock",
    "OutboxEvent",
    "PalmPayError",
    "PalmPayLink",
    "PalmPayOptions",
    "PalmPayService",
    "PalmPaySpec",
    "PayShapRail",
    "PaymentEventRecord",
    "PaymentResult",
    "RailPaymentRequest",
    "RailResult",
    "RailRetryPolicy",
    "RailTimeout",
    "RailTransientError",
    "ReconcileReport",
    "RotationReport",
    "SealedField",
    "SimulatedPayShapRail",
    "SimulatedRailConfig",
    "SpecError",
    "Verification",
    "action_permissions",
    "allowed_transitions",
    "error_table",
    "escalation_triggers",
    "human_checkpoints",
    "load_spec",
    "mask_proxy",
    "mask_ref",
    "system_clock",
]
