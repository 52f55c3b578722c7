"""The agent's palm-pay operations, executed through the backend's public API.

`suspend_palm_link`, `reactivate_palm_link` and `revoke_palm_link` go to
`PalmPayService.suspend / reactivate / revoke` as actor "payops-agent". The agent
only ever names a link by its id; the backend returns masked views, and the
reason it stores is masked too.

Idempotency: the reason written to the link's audit log starts with
"[<decision id>]". Before acting, the link's audit log is searched for that
marker, so a decision is applied at most once even across restarts and
processes (an approved action retried after a crash finds its earlier entry).

`consecutive_failures` feeds the spec's escalation trigger of the same name
(see guardrails.metrics): it follows the backend's CONTRACT §1 payment events
incrementally, so each event is read once per process.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from payops.memory.redact import mask_text
from payops.models import ExecutionResult, ProposedAction

from .actions import PALM_ACTIONS

if TYPE_CHECKING:
    from payops.palmpay import PalmPayService
    from payops.settings import Settings

ACTOR = "payops-agent"
MAX_BACKEND_REASON = 256  # the backend refuses longer reasons
EVENT_BATCH = 1000  # payment events read per call while catching up
RECENT_ATTEMPTS_KEPT = 512  # per link: enough timestamps to count one window's attempts


@dataclass
class _LinkFigures:
    streak: int = 0  # failed attempts in a row, newest first
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_ATTEMPTS_KEPT))


class PalmOps:
    """Runs palm-pay tools on a PalmPayService (opened lazily on first use)."""

    def __init__(self, service: PalmPayService | None = None,
                 factory: Callable[[], PalmPayService] | None = None) -> None:
        if service is None and factory is None:
            raise ValueError("PalmOps needs a PalmPayService or a factory for one")
        self._service = service
        self._factory = factory
        self._lock = threading.Lock()
        self._cursor = 0
        self._links: dict[str, _LinkFigures] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PalmOps:
        def open_service() -> PalmPayService:
            from payops.palmpay import PalmPayOptions, PalmPayService

            return PalmPayService(PalmPayOptions.from_settings(settings))

        return cls(factory=open_service)

    @property
    def service(self) -> PalmPayService:
        with self._lock:
            if self._service is None:
                assert self._factory is not None
                self._service = self._factory()
            return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()

    # -- execution ------------------------------------------------------------

    def execute(self, proposal: ProposedAction, decision_id: str, approver: str | None = None) -> ExecutionResult:
        """Apply one palm-pay operation, at most once per decision id. Never raises."""
        from payops.palmpay import PalmPayError

        spec = PALM_ACTIONS.get(proposal.tool)
        if spec is None:
            return ExecutionResult(status="failed", detail=f"{proposal.tool} is not a palm-pay operation",
                                   action_id=decision_id)
        link = str(proposal.args.get("palm_pay_id", ""))
        marker = f"[{decision_id}]"
        try:
            service = self.service
            earlier = [e for e in service.audit_log(link) if e.actor == ACTOR and (e.reason or "").startswith(marker)]
            if earlier:
                last = earlier[-1]
                status = "executed" if last.outcome == "applied" else "failed"
                return ExecutionResult(status=status, detail=f"already {last.outcome} for this decision: link {link} "
                                       f"{last.from_status} -> {last.to_status} (idempotent replay)",
                                       action_id=decision_id)
            reason = self._reason(marker, str(proposal.args.get("reason", "")), approver)
            if proposal.tool == "suspend_palm_link":
                view = service.suspend(link, reason=reason, actor=ACTOR)
            elif proposal.tool == "reactivate_palm_link":
                view = service.reactivate(link, actor=ACTOR, reason=reason, approved_by=approver)
            else:
                # human_required: the backend checks the approver is an authenticated operator.
                view = service.revoke(link, actor=ACTOR, reason=reason, approved_by=approver)
        except PalmPayError as exc:
            # The backend's messages never expose internals; `detail` is a safe masked hint.
            hint = f" ({exc.detail})" if exc.detail else ""
            return ExecutionResult(status="failed",
                                   detail=f"{proposal.tool} on {link}: {exc.code}: {exc.message}{hint}",
                                   action_id=decision_id)
        except Exception as exc:  # a broken backend must not break the tick; the audit shows it
            return ExecutionResult(status="failed", detail=f"{proposal.tool} on {link}: palm-pay backend error "
                                   f"({type(exc).__name__})", action_id=decision_id)
        done = {"suspend_palm_link": "suspended", "reactivate_palm_link": "reactivated", "revoke_palm_link": "revoked"}
        return ExecutionResult(status="executed",
                               detail=f"{done[proposal.tool]} palm link {link}: now {view.link_status}"
                               + (f" (approved by {approver})" if approver else ""), action_id=decision_id)

    @staticmethod
    def _reason(marker: str, reason: str, approver: str | None) -> str:
        text = f"{marker} {mask_text(reason.strip()) or 'agent decision'}"
        if approver:
            text += f"; approved by {mask_text(approver)}"
        return text[:MAX_BACKEND_REASON]

    # -- figures for the guardrails -------------------------------------------

    def _catch_up(self) -> None:
        service = self.service
        while True:
            batch = service.payment_events_after(self._cursor, EVENT_BATCH)
            for record in batch:
                self._cursor = max(self._cursor, record.id)
                event: dict[str, Any] = record.event
                link = event.get("palm_pay_id")
                if not link:
                    continue
                figures = self._links.setdefault(str(link), _LinkFigures())
                figures.streak = figures.streak + 1 if event.get("status") == "failure" else 0
                figures.recent.append(float(event.get("ts", 0.0)))
            if len(batch) < EVENT_BATCH:
                return

    def consecutive_failures(self, palm_pay_id: str) -> int:
        """Failed attempts in a row on this link, newest first (guardrails.metrics defines it)."""
        try:
            self._catch_up()
        except Exception:
            return 0  # backend unreachable: the metric is unknown, other guardrails still apply
        figures = self._links.get(palm_pay_id)
        return figures.streak if figures else 0

    def attempts_between(self, palm_pay_id: str, start: float, end: float) -> int | None:
        """The link's payment attempts with start <= ts < end (None when the backend cannot say)."""
        try:
            self._catch_up()
        except Exception:
            return None
        figures = self._links.get(palm_pay_id)
        return sum(1 for ts in figures.recent if start <= ts < end) if figures else 0
