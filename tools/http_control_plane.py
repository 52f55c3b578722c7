"""A control plane that sends actions to an orchestrator over HTTP (Settings.orchestrator_url).

The orchestrator protocol (JSON bodies; `{url}` is the configured base URL):

    POST {url}/actions                     apply; header Idempotency-Key: <decision id>
         body {action_id, tool, target, args, applied_at, expires_at}
         2xx: applied (a repeat of a known key answers 2xx without applying again);
         a new action with the same tool and target replaces the one in force
    GET  {url}/actions/<decision id>       2xx {"status": "applied" | "rolled_back"}; 404: never applied
    POST {url}/actions/<decision id>/rollback
         header Idempotency-Key: <decision id>:rollback, body {reason}
         2xx: rolled back (or already was); 404: nothing in force under that id

Every request is retried with tenacity. The orchestrator dedupes by key, so
sending the same action again is safe; what is never done is applying it under
a new key. Failures are sorted by what they tell us:

- the request never left (connection refused, connect timeout): not applied -> "failed";
- the orchestrator refused it (4xx other than 408/429): not applied -> "failed";
- the request may have been applied (timeout after sending, connection dropped,
  408/429/5xx): ambiguous -> "unknown". The action is kept in force unconfirmed,
  and the next tick's `reconcile()` asks the orchestrator (GET by key) and either
  confirms it or, when it was never applied, POSTs it again with the same key.

A local ledger (a SimulatedControlPlane) keeps what is in force, so TTL expiry,
restarts (restore) and the simulator's traffic policy work as with the
in-process control plane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from payops.models import ExecutionResult, ProposedAction, target_key
from payops.signals.policy import Diversion, RetryPolicy

from .control_plane import HTTP, STATEFUL_TOOLS, ActionInForce, Reconciliation, SimulatedControlPlane

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_SECONDS = 5.0  # per request; a tick waits at most attempts x timeout (+ backoff)
DEFAULT_ATTEMPTS = 3
RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx: the server may have applied it


class _Retry(Exception):
    """One attempt failed in a way worth retrying; `maybe_sent` says whether it may have been applied."""

    def __init__(self, detail: str, maybe_sent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class _Answer:
    status: str  # "ok" | "absent" | "refused" | "unreachable" | "unknown"
    detail: str
    body: Mapping[str, Any] | None = None


class HttpControlPlane:
    """ControlPlane over HTTP with idempotency keys, retries and reconciliation."""

    plane = HTTP

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, attempts: int = DEFAULT_ATTEMPTS,
                 backoff_seconds: float = 0.2, client: httpx.Client | None = None,
                 ledger: SimulatedControlPlane | None = None) -> None:
        self.url = url.rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.client = client or httpx.Client(timeout=timeout)
        self.ledger = ledger if ledger is not None else SimulatedControlPlane()
        self._late: list[Reconciliation] = []  # rollbacks that failed during expire(), reported by reconcile()
        # One-off actions (alerts) whose delivery is unknown: settled like the others, but they
        # are never "in force", so they live here rather than in the ledger (not kept across restarts).
        self._unsettled: dict[str, ActionInForce] = {}

    # -- HTTP ---------------------------------------------------------------------

    def _request(self, method: str, path: str, key: str | None = None, body: dict[str, Any] | None = None) -> _Answer:
        headers = {IDEMPOTENCY_HEADER: key} if key else {}
        maybe_sent = False

        def once() -> httpx.Response:
            nonlocal maybe_sent
            try:
                response = self.client.request(method, self.url + path, json=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
                raise _Retry(f"not sent: {type(exc).__name__}", maybe_sent=False) from None
            except httpx.TransportError as exc:  # read/write timeout, dropped connection: may have been applied
                maybe_sent = True
                raise _Retry(f"no answer: {type(exc).__name__}", maybe_sent=True) from None
            if response.status_code >= 500 or response.status_code in RETRY_STATUSES:
                maybe_sent = True
                raise _Retry(f"HTTP {response.status_code}", maybe_sent=True)
            return response

        retrying = Retrying(stop=stop_after_attempt(self.attempts), reraise=True,
                            wait=wait_exponential(multiplier=self.backoff_seconds, max=5.0),
                            retry=retry_if_exception_type(_Retry))
        try:
            response = retrying(once)
        except _Retry as exc:
            return _Answer("unknown" if maybe_sent else "unreachable", f"{exc.detail} after {self.attempts} attempt(s)")
        except RetryError:  # pragma: no cover - reraise=True hands back the last _Retry
            return _Answer("unknown", "retries exhausted")
        if response.status_code == 404:
            return _Answer("absent", "HTTP 404")
        if response.status_code >= 400:
            return _Answer("refused", f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {}
        return _Answer("ok", f"HTTP {response.status_code}", payload if isinstance(payload, dict) else {})

    def _post_action(self, record: ActionInForce) -> _Answer:
        body = {"action_id": record.action_id, "tool": record.tool, "target": record.target, "args": record.args,
                "applied_at": record.applied_at, "expires_at": record.expires_at}
        return self._request("POST", "/actions", key=record.action_id, body=body)

    # -- ControlPlane -------------------------------------------------------------

    def apply(self, action: ProposedAction, idempotency_key: str, now: float) -> ExecutionResult:
        known = self.ledger.actions.get(idempotency_key) or self._unsettled.get(idempotency_key)
        if known is not None:
            state = "in force" if known.confirmed else "outcome unknown, reconciling"
            return ExecutionResult(status="executed" if known.confirmed else "unknown",
                                   detail=f"already sent under this key ({state})", action_id=idempotency_key)
        if action.tool == "no_action":
            return ExecutionResult(status="skipped", detail="no action taken", action_id=idempotency_key)
        ttl = float(action.args.get("ttl_seconds", 0.0))
        record = ActionInForce(idempotency_key, action.tool, dict(action.target), dict(action.args), now, now + ttl)
        answer = self._post_action(record)
        if answer.status in ("refused", "absent"):
            return ExecutionResult(status="failed", detail=f"orchestrator refused {action.tool}: {answer.detail}",
                                   action_id=idempotency_key)
        if answer.status == "unreachable":
            return ExecutionResult(status="failed", detail=f"orchestrator unreachable, not applied: {answer.detail}",
                                   action_id=idempotency_key)
        local = self.ledger.apply(action, idempotency_key, now)  # mirror it (stateful tools stay in force)
        if answer.status == "unknown":
            mirrored = self.ledger.actions.get(idempotency_key)
            if mirrored is None:  # a one-off (an alert): settle it without putting it in force
                mirrored = self._unsettled[idempotency_key] = record
            mirrored.confirmed = False
            return ExecutionResult(status="unknown",
                                   detail=f"{action.tool} on {target_key(action.target)}: outcome unknown "
                                   f"({answer.detail}); reconciling next tick", action_id=idempotency_key)
        return ExecutionResult(status="executed", detail=f"{local.detail} (orchestrator {answer.detail})",
                               action_id=idempotency_key)

    def rollback(self, action_id: str, now: float, reason: str) -> ExecutionResult:
        record = self.ledger.actions.get(action_id)
        if record is None:
            return ExecutionResult(status="skipped", detail="nothing in force under that id", action_id=action_id)
        answer = self._request("POST", f"/actions/{action_id}/rollback", key=f"{action_id}:rollback",
                               body={"reason": reason})
        if answer.status in ("ok", "absent"):
            result = self.ledger.rollback(action_id, now, reason)
            suffix = "" if answer.status == "ok" else " (orchestrator had nothing in force)"
            return ExecutionResult(status="executed", detail=result.detail + suffix, action_id=action_id)
        status = "unknown" if answer.status == "unknown" else "failed"
        return ExecutionResult(status=status, detail=f"rollback of {record.key} not confirmed: {answer.detail}; "
                               "retried next tick", action_id=action_id)

    def expire(self, now: float) -> list[ActionInForce]:
        done = []
        for record in [a for a in self.ledger.actions.values() if a.confirmed and a.expires_at <= now]:
            result = self.rollback(record.action_id, now, "ttl expired")
            if result.status == "executed":
                done.append(record)
            else:
                self._late.append(Reconciliation(record.action_id, record.tool, dict(record.target), "rollback_failed",
                                                 result.detail))
        return done

    def in_force(self) -> list[ActionInForce]:
        return self.ledger.in_force()

    def restore(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.ledger.restore(records)

    def reconcile(self, now: float) -> list[Reconciliation]:
        found, self._late = self._late, []
        for record in [a for a in self.ledger.actions.values() if not a.confirmed]:
            found.append(self._settle(record, now))
        for record in list(self._unsettled.values()):
            found.append(self._settle(record, now))
        return found

    def _settle(self, record: ActionInForce, now: float) -> Reconciliation:
        def note(outcome: str, detail: str) -> Reconciliation:
            return Reconciliation(record.action_id, record.tool, dict(record.target), outcome, detail)

        answer = self._request("GET", f"/actions/{record.action_id}")
        if answer.status == "ok":
            if (answer.body or {}).get("status") == "rolled_back":
                self._forget(record)
                return note("dropped", "the orchestrator applied it and has already rolled it back")
            self._keep_confirmed(record)
            return note("confirmed", f"the orchestrator had applied it ({answer.detail})")
        if answer.status != "absent":
            return note("still_unknown", f"could not ask the orchestrator: {answer.detail}")
        if record.tool in STATEFUL_TOOLS and record.expires_at <= now:
            self._forget(record)
            return note("dropped", "never applied, and its TTL has passed: not sent again")
        again = self._post_action(record)  # same key: the orchestrator applies it at most once
        if again.status == "ok":
            self._keep_confirmed(record)
            return note("reapplied", f"never applied; sent again under the same key ({again.detail})")
        if again.status in ("refused", "unreachable"):
            self._forget(record)
            return note("dropped", f"never applied; resending failed: {again.detail}")
        return note("still_unknown", f"resent, outcome unknown again: {again.detail}")

    def _keep_confirmed(self, record: ActionInForce) -> None:
        if record.tool in STATEFUL_TOOLS:
            record.confirmed = True
        else:
            self._unsettled.pop(record.action_id, None)  # an alert is done once delivered

    def _forget(self, record: ActionInForce) -> None:
        self.ledger.actions.pop(record.action_id, None)
        self._unsettled.pop(record.action_id, None)

    def close(self) -> None:
        self.client.close()

    # -- TrafficPolicy (the simulator obeys the ledger) ------------------------------

    def reroute(self, dims: Mapping[str, str], candidates: Mapping[str, float], draw: float) -> str | None:
        return self.ledger.reroute(dims, candidates, draw)

    def suppression(self, dims: Mapping[str, str]) -> Diversion | None:
        return self.ledger.suppression(dims)

    def retry_policy(self, dims: Mapping[str, str]) -> RetryPolicy | None:
        return self.ledger.retry_policy(dims)
