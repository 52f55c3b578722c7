"""Administration of links and keys: suspension, suspension lifts, revocation, data-key rotation.

Who may do what is actors.py's two-person rule: a human operator's revocation, lift or rotation runs
only as an approved change request (change_requests.py); the agent's human_required actions need one
human approval; the backend's own moves are single-actor. Every refusal is audited.
"""

from __future__ import annotations

import logging

from .actors import BACKEND, authorisation_refusal
from .crypto import key_id_of
from .errors import PalmPayError
from .masking import mask_free_text
from .models import ACTIVE, REVOKED, SUSPENDED, LinkView, RotationReport
from .reads import ReadsMixin
from .service_core import MAX_AUDIT_REASON, PROXY_FIELD, TEMPLATE_FIELD, field_aad
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

    def rotate_key(
        self, *, batch: int = 500, actor: str = BACKEND, approved_by: str | None = None
    ) -> RotationReport:
        """New active data key; re-encrypt every row; retire keys no row uses any more.

        A human's rotation runs only as an approved change request (approve_request calls this).
        """
        why_not = authorisation_refusal("rotate_key", actor, approved_by)
        if why_not is not None:
            raise self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        new_key = self._ring.add_active_key()
        with self.store.write() as tx:
            tx.set_active_key_id(new_key)  # from here on, every process seals with the new key
        rewritten = 0
        while True:
            done = self._reencrypt_batch(new_key, batch)
            rewritten += done
            if done < batch:
                break
        with self.store.write() as tx:
            in_use = {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]}
            retired = self._ring.retire(set(self._ring.key_ids()) - in_use - {new_key})
            tx.audit(
                self._now(), palm_pay_id=None, actor=actor, action="rotate_key", from_status=None,
                to_status=None, outcome="applied", reason=f"active key {new_key}; {rewritten} rows re-encrypted"
                + (f"; approved by {approved_by}" if approved_by else ""),
            )
        self._cipher.forget_cached()
        return RotationReport(new_key_id=new_key, rows_reencrypted=rewritten, retired_key_ids=tuple(sorted(retired)))

    def reencrypt_step(self, *, batch: int = 500) -> int:
        """Background re-encryption (each settlement round): up to `batch` rows not yet sealed under the active
        key, e.g. those a rotation interrupted by a crash left behind. Returns how many; old keys stay readable."""
        with self.store.read() as tx:
            active = tx.active_key_id()
        if active is None or (self._ring.key(active) is None and (not self._ring.reload() or
                                                                  self._ring.key(active) is None)):
            return 0  # this process cannot seal under it yet; a process that can will
        done = self._reencrypt_batch(active, batch)
        if done:
            with self.store.write() as tx:
                tx.audit(self._now(), palm_pay_id=None, actor=BACKEND, action="reencrypt", from_status=None,
                         to_status=None, outcome="applied", reason=f"{done} rows re-encrypted under {active}")
        return done

    def _reencrypt_batch(self, key_id: str, batch: int) -> int:
        """Re-seal up to `batch` rows not under `key_id` in one write transaction (access-logged); how many."""
        with self.store.write() as tx:
            todo = [
                row for row in tx.sealed_values() if key_id_of(row[1]) != key_id or key_id_of(row[2]) != key_id
            ][:batch]
            ts = self._now()
            for palm_pay_id, template_ct, proxy_ct in todo:
                template_aad, proxy_aad = field_aad(palm_pay_id, TEMPLATE_FIELD), field_aad(palm_pay_id, PROXY_FIELD)
                tx.set_ciphertexts(
                    palm_pay_id,
                    template_ct=self._cipher.seal(self._cipher.open(template_ct, template_aad), template_aad, key_id),
                    proxy_ct=self._cipher.seal(self._cipher.open(proxy_ct, proxy_aad), proxy_aad, key_id),
                )
                tx.log_access(ts, palm_pay_id, TEMPLATE_FIELD, "key_rotation", f"re-encrypt under {key_id}")
                tx.log_access(ts, palm_pay_id, PROXY_FIELD, "key_rotation", f"re-encrypt under {key_id}")
        return len(todo)
