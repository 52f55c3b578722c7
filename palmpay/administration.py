"""Administration of links: suspension, suspension lifts, revocation (keys: rotation.py).

Who may do what is actors.py's two-person rule: a human operator's revocation, lift or rotation runs
only as an approved change request (change_requests.py); the agent's human_required actions need one
human approval; the backend's own moves are single-actor. Every refusal is audited.
"""

from __future__ import annotations

import logging

from .actors import authorisation_refusal
from .errors import PalmPayError
from .masking import mask_free_text
from .models import ACTIVE, REVOKED, SUSPENDED, LinkView
from .reads import ReadsMixin
from .service_core import MAX_AUDIT_REASON
from .store import Tx

log = logging.getLogger("payops.palmpay")


class AdministrationMixin(ReadsMixin):
    def suspend(self, palm_pay_id: str, reason: str, actor: str) -> LinkView:
        """Suspend for review: an authenticated operator or the agent alone may (the safe direction)."""
        return self._change_status(palm_pay_id, SUSPENDED, actor=actor, action="suspend", reason=reason)

    def reactivate(
        self, palm_pay_id: str, actor: str, reason: str = "review completed", *, approved_by: str | None = None
    ) -> LinkView:
        """Lift a suspension. A human's lift needs a second operator (see request_change / approve_request)."""
        # Only a suspension is lifted here; pending links become active through verify() alone.
        return self._change_status(
            palm_pay_id, ACTIVE, actor=actor, action="reactivate", reason=reason, only_from=SUSPENDED,
            approved_by=approved_by,
        )

    def revoke(
        self, palm_pay_id: str, actor: str, reason: str = "revoked on request", *, approved_by: str | None = None
    ) -> LinkView:
        """Outcome palm_link_revoked (permanent, human_required in the spec).

        A human operator's revocation runs only as an approved change request (two people);
        the agent's needs `approved_by`, the human who approved its proposal.
        """
        return self._change_status(
            palm_pay_id, REVOKED, actor=actor, action="revoke", reason=reason, approved_by=approved_by
        )

    def _change_status(
        self, palm_pay_id: str, to: str, *, actor: str, action: str, reason: str, only_from: str | None = None,
        approved_by: str | None = None,
    ) -> LinkView:
        actor = self._text(actor, "actor")
        reason = mask_free_text(self._text(reason, "reason"))
        ts = self._now()
        with self.store.write() as tx:
            refusal = self._change_status_tx(
                tx, palm_pay_id, to, ts=ts, actor=actor, action=action, reason=reason, only_from=only_from,
                approved_by=approved_by,
            )
        if refusal is not None:
            raise refusal
        return self.show(palm_pay_id)

    def _change_status_tx(
        self, tx: Tx, palm_pay_id: str, to: str, *, ts: float, actor: str, action: str, reason: str,
        only_from: str | None = None, approved_by: str | None = None,
    ) -> PalmPayError | None:
        link = self._require_link(tx, palm_pay_id)
        why_not = authorisation_refusal(action, actor, approved_by)
        if why_not is not None:
            tx.audit(
                ts, palm_pay_id=link.palm_pay_id, actor=mask_free_text(actor), action=action,
                from_status=link.link_status, to_status=to, outcome="refused", reason=why_not,
            )
            log.warning("refused %s on %s: not authorised", action, link.palm_pay_id)
            return self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        if approved_by:
            reason = f"{reason}; approved by {approved_by}"[:MAX_AUDIT_REASON]
        if only_from is not None and link.link_status != only_from:
            return self._refuse_transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        refusal = self._transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        if refusal is None:
            if to == REVOKED:
                tx.drop_otp(link.palm_pay_id)
                self._emit(tx, ts, "palm_link_revoked", self._values(link))
            elif to == ACTIVE:
                tx.clear_match_failures(link.palm_pay_id)  # the review closed the earlier failures
        return refusal
