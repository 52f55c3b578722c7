"""The two-person rule, as part of PalmPayService (CLI, HTTP API and agent all pass through it).

A human operator's revocation, suspension lift, limit change or key rotation is first a
*change request*. A second, different authenticated operator approves it before it expires;
the approval and the change are one write transaction (the request's status moves from
pending exactly once), so it runs exactly once. A key rotation moves pending -> approved in that
transaction and -> executed once the new version is active; the settlement rounds re-encrypt or
re-index the rows afterwards (rotation.py).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .actors import TWO_PERSON_ACTIONS, parse_actor
from .administration import AdministrationMixin
from .errors import PalmPayError
from .masking import mask_free_text
from .models import ACTIVE, REVOKED, SUSPENDED, ChangeRequest
from .rotation import RotationMixin

if TYPE_CHECKING:
    from .store import Tx

_TARGET = {"revoke": REVOKED, "reactivate": ACTIVE}
_LIMIT_FIELDS = ("daily_limit", "transaction_limit")
_KEY_ACTIONS = ("rotate_key", "rotate_index_root")  # no link; approved, then executed when switched
REQUEST_LIST_LIMIT = 500


class ChangeRequestsMixin(AdministrationMixin, RotationMixin):
    """request_change / approve_request / reject_request / change_requests for PalmPayService."""

    def request_change(
        self, action: str, *, requested_by: str, palm_pay_id: str | None = None,
        reason: str = "", args: dict[str, Any] | None = None,
    ) -> ChangeRequest:
        """Record a human-initiated change for a second operator to approve; nothing changes yet."""
        if action not in TWO_PERSON_ACTIONS:
            raise self._invalid(f"action must be one of: {', '.join(sorted(TWO_PERSON_ACTIONS))}")
        who = parse_actor(self._text(requested_by, "requested_by"))
        if who is None or not who.human:
            raise self._errors.make("PALM_PAY_NOT_AUTHORISED",
                                    detail="only an authenticated operator may request changes")
        reason = mask_free_text(self._text(reason or f"{action} requested", "reason"))
        busy = self.rotation_in_progress() if action == "rotate_index_root" else None
        if busy is not None:
            raise self._invalid(busy)
        safe_args = self._request_args(action, args or {})
        ts = self._now()
        request = ChangeRequest(
            request_id=f"cr_{secrets.token_hex(8)}", action=action, palm_pay_id=None, reason=reason, args=safe_args,
            requested_by=requested_by, requested_at=ts, expires_at=ts + self.options.change_request_ttl_s,
            status="pending",
        )
        with self.store.write() as tx:
            if action not in _KEY_ACTIONS:
                link = self._require_link(tx, self._text(palm_pay_id, "palm_pay_id"))
                request = request.model_copy(update={"palm_pay_id": link.palm_pay_id})
            tx.insert_request(request)
            tx.audit(ts, palm_pay_id=request.palm_pay_id, actor=requested_by, action=f"request_{action}",
                     from_status=None, to_status=None, outcome="applied", reason=f"{request.request_id}: {reason}")
        return request

    def _request_args(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if action != "set_limits":
            if args:
                raise self._invalid(f"{action} takes no arguments")
            return {}
        unknown = set(args) - set(_LIMIT_FIELDS)
        if unknown or not args:
            raise self._invalid(f"set_limits takes {' and/or '.join(_LIMIT_FIELDS)}")
        return {name: str(Decimal(self._limit(value, name)).scaleb(-2)) for name, value in args.items()}

    def change_requests(self, status: str | None = "pending") -> list[ChangeRequest]:
        """Requests by status (None: all), oldest first; a pending one past its expiry reads as expired."""
        self._expire_requests()
        with self.store.read() as tx:
            return tx.change_requests(status, REQUEST_LIST_LIMIT)

    def change_request(self, request_id: str) -> ChangeRequest:
        with self.store.read() as tx:
            found = tx.change_request(str(request_id))
        if found is None:
            raise self._errors.make("PALM_PAY_REQUEST_NOT_FOUND")
        return found

    def reject_request(self, request_id: str, *, decided_by: str, note: str = "") -> ChangeRequest:
        ts = self._now()
        with self.store.write() as tx:
            request = self._decidable(tx, request_id, decided_by, ts)
            if isinstance(request, ChangeRequest):
                tx.decide_request(request.request_id, from_status="pending", to_status="rejected",
                                  decided_by=decided_by, ts=ts, result=mask_free_text(note)[:256] or None)
                tx.audit(ts, palm_pay_id=request.palm_pay_id, actor=decided_by, action=f"reject_{request.action}",
                         from_status=None, to_status=None, outcome="applied", reason=request.request_id)
        if not isinstance(request, ChangeRequest):
            raise request
        return self.change_request(request_id)

    def approve_request(self, request_id: str, *, approved_by: str) -> ChangeRequest:
        """A second operator approves: the change runs now, once. Refusals leave the request as it was."""
        ts = self._now()
        refusal: PalmPayError | None = None
        with self.store.write() as tx:
            request = self._decidable(tx, request_id, approved_by, ts)
            if not isinstance(request, ChangeRequest):
                refusal = request
            elif request.action in _KEY_ACTIONS:
                tx.decide_request(request.request_id, from_status="pending", to_status="approved",
                                  decided_by=approved_by, ts=ts)
            else:
                refusal = self._apply_request(tx, request, approved_by, ts)
                status = "executed" if refusal is None else "failed"
                tx.decide_request(request.request_id, from_status="pending", to_status=status, decided_by=approved_by,
                                  ts=ts, result=None if refusal is None else refusal.code)
        if isinstance(request, ChangeRequest) and request.action in _KEY_ACTIONS and refusal is None:
            try:
                result, status = self._rotate(request, approved_by), "executed"
            except PalmPayError as exc:  # e.g. a root rotation still in progress: recorded as failed
                result, status, refusal = exc.code, "failed", exc
            with self.store.write() as tx:
                tx.decide_request(request.request_id, from_status="approved", to_status=status, decided_by=None,
                                  ts=self._now(), result=result)
        if refusal is not None:
            raise refusal  # committed first: a failed request is recorded as failed, with its code
        return self.change_request(request_id)

    def _rotate(self, request: ChangeRequest, approved_by: str) -> str:
        """Switch to a new key version and schedule the rest for the settlement rounds (rotation.py): the
        approval returns at once, however many rows there are."""
        if request.action == "rotate_index_root":
            root = self.rotate_index_root(actor=request.requested_by, approved_by=approved_by)
            return f"index root {root}; re-indexing scheduled"
        report = self.rotate_key(actor=request.requested_by, approved_by=approved_by)
        return f"active key {report.new_key_id}; re-encryption scheduled"

    def _apply_request(self, tx: Tx, request: ChangeRequest, approved_by: str,
                       ts: float) -> PalmPayError | None:
        assert request.palm_pay_id is not None
        reason = f"{request.reason} (request {request.request_id})"
        if request.action in _TARGET:
            return self._change_status_tx(
                tx, request.palm_pay_id, _TARGET[request.action], ts=ts, actor=request.requested_by,
                action=request.action, reason=reason, approved_by=approved_by,
                only_from=SUSPENDED if request.action == "reactivate" else None,
            )
        return self._set_limits_tx(tx, request, approved_by, ts, reason)

    def _set_limits_tx(self, tx: Tx, request: ChangeRequest, approved_by: str, ts: float,
                       reason: str) -> PalmPayError | None:
        assert request.palm_pay_id is not None
        link = self._require_link(tx, request.palm_pay_id)
        daily = self._limit(request.args.get("daily_limit", Decimal(link.daily_limit).scaleb(-2)), "daily_limit")
        per_txn = self._limit(
            request.args.get("transaction_limit", Decimal(link.transaction_limit).scaleb(-2)), "transaction_limit")
        if link.spent_day is not None and link.daily_spent + link.reserved > daily:
            # The link's own row and CHECK would refuse it; a lower limit than already used waits a day.
            return self._invalid("the new daily limit is below what the link has already used today")
        tx.set_limits(link.palm_pay_id, daily_limit=daily, transaction_limit=per_txn, from_day=link.spent_day)
        tx.audit(ts, palm_pay_id=link.palm_pay_id, actor=request.requested_by, action="set_limits",
                 from_status=link.link_status, to_status=link.link_status, outcome="applied",
                 reason=f"{reason}; daily {link.daily_limit}->{daily}, transaction {link.transaction_limit}->{per_txn}"
                        f" cents; approved by {approved_by}")
        return None

    def _decidable(self, tx: Tx, request_id: str, decided_by: str, ts: float) -> ChangeRequest | PalmPayError:
        """The pending request a different operator may decide now, or the refusal to raise."""
        request = tx.change_request(str(request_id))
        if request is None:
            return self._errors.make("PALM_PAY_REQUEST_NOT_FOUND")
        who = parse_actor(decided_by)
        if who is None or not who.human:
            return self._errors.make("PALM_PAY_NOT_AUTHORISED", detail="only an authenticated operator may decide")
        if request.status != "pending":
            return self._errors.make("PALM_PAY_REQUEST_NOT_PENDING", detail=f"{request.request_id} is {request.status}")
        if ts >= request.expires_at:
            tx.decide_request(request.request_id, from_status="pending", to_status="expired", decided_by=None, ts=ts)
            return self._errors.make("PALM_PAY_REQUEST_EXPIRED")
        requester = parse_actor(request.requested_by)
        if requester is not None and requester.key_id == who.key_id:
            return self._errors.make("PALM_PAY_NOT_AUTHORISED",
                                     detail="the approver must be a different operator from the requester")
        return request

    def _expire_requests(self) -> None:
        ts = self._now()
        with self.store.write() as tx:
            for request in tx.change_requests("pending", REQUEST_LIST_LIMIT):
                if ts >= request.expires_at:
                    tx.decide_request(request.request_id, from_status="pending", to_status="expired",
                                      decided_by=None, ts=ts)
