"""The palm-pay spec, loaded at run time.

Behaviour that the spec defines (states, transitions, error table, event
payloads, limit defaults, permissions) is read from the JSON here rather than
copied into code, so editing the spec changes what the backend does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from payops.errors import BadInput

PACKAGED_SPEC = "palm-pay.spec.json"

# Codes the backend raises by name; a spec without them cannot drive this code.
REQUIRED_ERROR_CODES = (
    "PALM_PAY_NOT_REGISTERED",
    "PALM_PAY_LINK_INACTIVE",
    "PALM_PAY_DAILY_LIMIT",
    "PALM_PAY_TRANSACTION_LIMIT",
    "PALM_PAY_VERIFICATION_EXPIRED",
    "PALM_PAY_DUPLICATE_PALM",
    "PALM_PAY_SPOOF_DETECTED",
)


class SpecError(BadInput, ValueError):
    """The spec file is missing or does not have the shape this backend needs."""


class ErrorEntry(NamedTuple):
    status: int
    message: str


@dataclass(frozen=True)
class EventSpec:
    name: str
    payload: tuple[str, ...]


@dataclass(frozen=True)
class EscalationTrigger:
    metric: str
    operator: str
    threshold: float
    expression: str

    def fires(self, value: float) -> bool:
        return bool(_COMPARATORS[self.operator](value, self.threshold))


_COMPARATORS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
}
_TRIGGER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class PalmPaySpec:
    """Typed view of the parts of the spec the backend executes."""

    raw: dict[str, Any] = field(repr=False)
    source: str
    states: tuple[str, ...]
    initial_state: str
    terminal_states: frozenset[str]
    transitions: frozenset[tuple[str, str]]
    errors: dict[str, ErrorEntry]
    events: dict[str, EventSpec]
    outcome_events: dict[str, EventSpec]
    permissions: dict[str, str]
    checkpoints: tuple[str, ...]
    triggers: tuple[EscalationTrigger, ...]
    sensitive_fields: frozenset[str]
    field_options: dict[str, tuple[str, ...]]
    field_defaults: dict[str, Any]
    validation_messages: dict[tuple[str, str], str]

    def can_transition(self, from_state: str, to_state: str) -> bool:
        return (from_state, to_state) in self.transitions

    def default_limit(self, field_name: str) -> Decimal:
        return Decimal(str(self.field_defaults[field_name]))

    def message_for(self, field_name: str, rule: str, fallback: str) -> str:
        return self.validation_messages.get((field_name, rule), fallback)


def _resolve_default_path() -> Path | None:
    # Imported here so that reading the packaged spec never needs settings.
    from payops.settings import Settings

    return Settings().palm_spec_path


def load_spec(path: Path | None = None) -> PalmPaySpec:
    """Read the spec from `path`, else Settings.palm_spec_path, else the packaged copy."""
    path = path if path is not None else _resolve_default_path()
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read palm-pay spec {path}: {exc.strerror}") from None
        source = str(path)
    else:
        text = resources.files("payops.palmpay").joinpath(PACKAGED_SPEC).read_text(encoding="utf-8")
        source = f"package:payops.palmpay/{PACKAGED_SPEC}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"palm-pay spec {source} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return parse_spec(raw, source=source)


def parse_spec(raw: dict[str, Any], *, source: str = "<dict>") -> PalmPaySpec:
    try:
        return _parse(raw, source)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"palm-pay spec {source} is malformed: {exc!r}") from None


def _parse(raw: dict[str, Any], source: str) -> PalmPaySpec:
    states_block = raw["states"]
    values = states_block["values"]
    states = tuple(v["id"] for v in values)
    initial = [v["id"] for v in values if v.get("initial")]
    if len(initial) != 1:
        raise SpecError(f"palm-pay spec {source}: exactly one initial state expected, found {initial}")
    terminal = frozenset(v["id"] for v in values if v.get("terminal"))
    transitions = frozenset((t["from"], t["to"]) for t in states_block["transitions"])
    for a, b in transitions:
        if a not in states or b not in states:
            raise SpecError(f"palm-pay spec {source}: transition {a}->{b} names an unknown state")

    errors = {e["code"]: ErrorEntry(int(e["status"]), str(e["message"])) for e in raw["errors"]}
    missing = [c for c in REQUIRED_ERROR_CODES if c not in errors]
    if missing:
        raise SpecError(f"palm-pay spec {source}: error codes missing: {', '.join(missing)}")

    events = {e["name"]: EventSpec(e["name"], tuple(e["payload"])) for e in raw["events"]}
    outcome_events: dict[str, EventSpec] = {}
    for outcome, body in raw["outcomes"].items():
        for step in body.get("then", []):
            if step.get("action") == "emit_event":
                name = step["event"]
                # The events table is the authority on payloads; outcomes only name the event.
                outcome_events[outcome] = events.get(name, EventSpec(name, tuple(step.get("payload", []))))

    agi = raw.get("agi", {})
    permissions = {p["action"]: p["permission"] for p in agi.get("safety", {}).get("action_permissions", [])}
    autonomy = agi.get("autonomy", {})
    checkpoints = tuple(autonomy.get("human_checkpoints", []))
    triggers = tuple(_parse_trigger(t, source) for t in autonomy.get("escalation_triggers", []))

    fields = raw["fields"]
    sensitive = frozenset(f["name"] for f in fields if f.get("sensitive"))
    options = {f["name"]: tuple(o["value"] for o in f["options"]) for f in fields if f.get("options")}
    defaults = {f["name"]: f["default"] for f in fields if "default" in f}
    messages = {
        (f["name"], v["type"]): v["message"] for f in fields for v in f.get("validation", []) if "message" in v
    }
    for limit in ("daily_limit", "transaction_limit"):
        if limit not in defaults:
            raise SpecError(f"palm-pay spec {source}: field {limit} has no default")

    return PalmPaySpec(
        raw=raw,
        source=source,
        states=states,
        initial_state=initial[0],
        terminal_states=terminal,
        transitions=transitions,
        errors=errors,
        events=events,
        outcome_events=outcome_events,
        permissions=permissions,
        checkpoints=checkpoints,
        triggers=triggers,
        sensitive_fields=sensitive,
        field_options=options,
        field_defaults=defaults,
        validation_messages=messages,
    )


def _parse_trigger(expression: str, source: str) -> EscalationTrigger:
    match = _TRIGGER.match(expression)
    if not match:
        raise SpecError(f"palm-pay spec {source}: cannot read escalation trigger {expression!r}")
    metric, op, value = match.groups()
    return EscalationTrigger(metric, op, float(value), expression)


# --- module helpers: the agent and tools ask these without building a service ---


def allowed_transitions(spec: PalmPaySpec | None = None) -> frozenset[tuple[str, str]]:
    return (spec or load_spec()).transitions


def action_permissions(spec: PalmPaySpec | None = None) -> dict[str, str]:
    """Outcome name -> permission (autonomous, supervised, human_required)."""
    return dict((spec or load_spec()).permissions)


def human_checkpoints(spec: PalmPaySpec | None = None) -> tuple[str, ...]:
    return (spec or load_spec()).checkpoints


def escalation_triggers(spec: PalmPaySpec | None = None) -> tuple[EscalationTrigger, ...]:
    return (spec or load_spec()).triggers


def error_table(spec: PalmPaySpec | None = None) -> dict[str, ErrorEntry]:
    """Error code -> (HTTP status, customer-facing message)."""
    return dict((spec or load_spec()).errors)
