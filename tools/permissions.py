"""Permission levels of palm-pay operations, read at run time from the palm-pay spec.

The spec is the source of truth: `agi.safety.action_permissions` (per outcome),
`agi.autonomy.level` (the default), `agi.autonomy.human_checkpoints` and
`agi.autonomy.escalation_triggers`. Editing the spec changes behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from payops.palmpay.spec import EscalationTrigger, PalmPaySpec, load_spec

from .actions import ACTIONS, PALM_ACTIONS, ActionSpec, Permission


@dataclass(frozen=True)
class PermissionTable:
    default_level: Permission
    by_outcome: Mapping[str, Permission]
    terminal_states: frozenset[str]
    checkpoint_sensitive: bool  # "before modifying sensitive data fields"
    checkpoint_terminal: bool  # "before transitioning to a terminal state"
    triggers: tuple[EscalationTrigger, ...]

    def level(self, spec: ActionSpec) -> Permission:
        if spec.name not in PALM_ACTIONS:
            return spec.permission
        if spec.palm_outcome and spec.palm_outcome in self.by_outcome:
            return self.by_outcome[spec.palm_outcome]
        return self.default_level

    def checkpoints(self, spec: ActionSpec) -> list[str]:
        """The human checkpoints this action crosses (empty: none)."""
        hit = []
        if self.checkpoint_sensitive and spec.modifies_sensitive:
            hit.append("modifies sensitive data fields")
        if self.checkpoint_terminal and spec.palm_transition_to in self.terminal_states:
            hit.append(f"transitions a link to the terminal state '{spec.palm_transition_to}'")
        return hit


def permission_table(spec: PalmPaySpec | None = None) -> PermissionTable:
    """Built from the spec as it is on disk now (packaged copy or PAYOPS_PALM_SPEC_PATH)."""
    spec = spec or load_spec()
    checkpoints = " ".join(spec.checkpoints).lower()
    return PermissionTable(
        default_level=Permission(spec.raw.get("agi", {}).get("autonomy", {}).get("level", "supervised")),
        by_outcome={outcome: Permission(level) for outcome, level in spec.permissions.items()},
        terminal_states=spec.terminal_states,
        checkpoint_sensitive="sensitive" in checkpoints,
        checkpoint_terminal="terminal state" in checkpoints,
        triggers=spec.triggers,
    )


def action_levels(table: PermissionTable) -> dict[str, Permission]:
    return {name: table.level(spec) for name, spec in ACTIONS.items()}
