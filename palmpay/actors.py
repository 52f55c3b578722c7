"""Who acts on palm-pay, as the service records it, and the two-person rule as pure functions.

An actor is an authenticated principal, never free text. The entrypoints authenticate
(an API key over HTTP; an operator API key for CLI writes) and pass its principal:

    operator:<key id>     a human operator
    terminal:<key id>     a terminal (customer-present enrolment and payment only)
    customer@terminal:<key id>   the customer at that terminal
    payops-agent          the agent (not a person: its human_required actions need a human approval)
    payment_backend       the backend itself (verification expiry, fraud suspension: the spec's own moves)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BACKEND = "payment_backend"
AGENT = "payops-agent"
_PRINCIPAL = re.compile(r"^(?:customer@)?(operator|terminal|viewer):([0-9a-f]{12})$")

# Human-initiated changes that a second, different operator must approve (issue 15): leaving a
# state for good, lifting a suspension (fraud review), changing sensitive data, rotating keys.
TWO_PERSON_ACTIONS = frozenset({"revoke", "reactivate", "rotate_key", "rotate_index_root", "set_limits"})
# The agent's actions whose spec permission is human_required: one human approval suffices.
AGENT_HUMAN_REQUIRED = frozenset({"revoke"})
ADMIN_ACTIONS = frozenset({"suspend"}) | TWO_PERSON_ACTIONS


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # operator, terminal, customer, agent, backend
    key_id: str | None

    @property
    def human(self) -> bool:
        return self.kind == "operator"


def parse_actor(actor: str) -> Principal | None:
    """The principal an actor string names, or None when it names none (free text)."""
    if actor == BACKEND:
        return Principal("backend", None)
    if actor == AGENT:
        return Principal("agent", None)
    match = _PRINCIPAL.match(actor)
    if match is None:
        return None
    kind = "customer" if actor.startswith("customer@") else match.group(1)
    return Principal(kind, match.group(2))


def authorisation_refusal(action: str, actor: str, approved_by: str | None) -> str | None:
    """Why `actor` may not run administrative `action` (approved by `approved_by`), or None if it may.

    The backend's own moves are single-actor. The agent needs one human approval for its
    human_required actions. A human needs a second, different human for the two-person actions.
    Terminals and customers administer nothing.
    """
    who = parse_actor(actor)
    if who is None:
        return "the actor must be an authenticated principal (an API key), not free text"
    if who.kind == "backend":
        return None
    approver = parse_actor(approved_by) if approved_by else None
    if approved_by and (approver is None or not approver.human):
        return "the approver must be an authenticated human operator"
    if who.kind == "agent":
        if action in AGENT_HUMAN_REQUIRED and approver is None:
            return f"{action} is human_required: the agent's proposal needs a human approval"
        return None
    if not who.human:
        return f"a {who.kind} may not {action} links"
    if action in TWO_PERSON_ACTIONS:
        if approver is None:
            return f"{action} needs a second operator's approval: create a change request"
        if approver.key_id == who.key_id:
            return "the approver must be a different operator from the requester"
    return None
