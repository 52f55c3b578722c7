"""Permission levels of palm-pay operations, read at run time from the palm-pay spec.

The spec is the source of truth: `agi.safety.action_permissions` (per outcome),
`agi.autonomy.level` (the default for operations with no outcome of their own),
`agi.autonomy.human_checkpoints`, `agi.autonomy.escalation_triggers`, and the
state machine (an operation that lands in a terminal state cannot be undone).

The table remembers which file it came from; `refreshed()` reloads it when that
file changes, so editing the spec changes behaviour with no code change and no
restart. A spec that no longer loads fails closed: every palm-pay operation then
needs a human, and the reason says why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from payops.palmpay.spec import PACKAGED_SPEC, EscalationTrigger, PalmPaySpec, SpecError, load_spec

from .actions import ACTIONS, PALM_ACTIONS, ActionSpec, Permission

# Phrases of `human_checkpoints` this agent knows how to check (matched case-insensitively).
CHECKPOINT_SENSITIVE = "sensitive"  # "before modifying sensitive data fields"
CHECKPOINT_TERMINAL = "terminal state"  # "before transitioning to a terminal state"

Stamp = tuple[int, int] | None  # (mtime_ns, size) of the spec file; None when it cannot be stat'ed


@dataclass(frozen=True)
class PermissionTable:
    default_level: Permission
    by_outcome: Mapping[str, Permission]
    terminal_states: frozenset[str]
    checkpoint_sensitive: bool  # "before modifying sensitive data fields"
    checkpoint_terminal: bool  # "before transitioning to a terminal state"
    triggers: tuple[EscalationTrigger, ...]
    leavable_states: frozenset[str] = frozenset()  # states with a transition out of them
    source: Path | None = None  # the spec file it was read from (None: not a file)
    stamp: Stamp = None
    error: str | None = None  # set when the spec could not be read: everything palm needs a human
    unknown_checkpoints: tuple[str, ...] = field(default=())  # checkpoints no rule here understands

    def level(self, spec: ActionSpec) -> Permission:
        if spec.name not in PALM_ACTIONS:
            return spec.permission
        if self.error is not None:
            return Permission.HUMAN_REQUIRED
        if spec.palm_outcome and spec.palm_outcome in self.by_outcome:
            return self.by_outcome[spec.palm_outcome]
        return self.default_level

    def reversible(self, spec: ActionSpec) -> bool:
        """A palm-pay operation is reversible when its destination state can be left again."""
        if not spec.palm:
            return spec.reversible
        if self.error is not None:
            return False
        return spec.palm_transition_to not in self.terminal_states and spec.palm_transition_to in self.leavable_states

    def checkpoints(self, spec: ActionSpec) -> list[str]:
        """The human checkpoints this action crosses (empty: none)."""
        hit = []
        if self.error is not None and spec.palm:
            hit.append(f"palm-pay spec unreadable ({self.error})")
        if self.checkpoint_sensitive and spec.modifies_sensitive:
            hit.append("modifies sensitive data fields")
        if self.checkpoint_terminal and spec.palm_transition_to in self.terminal_states:
            hit.append(f"transitions a link to the terminal state '{spec.palm_transition_to}'")
        if spec.palm and self.unknown_checkpoints:
            # A checkpoint this code cannot evaluate is treated as crossed: fail closed.
            hit.extend(f"unrecognised checkpoint '{c}'" for c in self.unknown_checkpoints)
        return hit


def spec_file(path: Path | None) -> Path | None:
    """The file a spec is read from: the given path, or the packaged copy when it is a real file."""
    if path is not None:
        return Path(path)
    packaged = resources.files("payops.palmpay").joinpath(PACKAGED_SPEC)
    candidate = Path(str(packaged))
    return candidate if candidate.is_file() else None


def _stamp(path: Path | None) -> Stamp:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def from_spec(spec: PalmPaySpec, source: Path | None = None, stamp: Stamp = None) -> PermissionTable:
    autonomy = spec.raw.get("agi", {}).get("autonomy", {})
    known: list[str] = []
    unknown: list[str] = []
    for checkpoint in spec.checkpoints:
        text = checkpoint.lower()
        (known if CHECKPOINT_SENSITIVE in text or CHECKPOINT_TERMINAL in text else unknown).append(checkpoint)
    joined = " ".join(known).lower()
    return PermissionTable(
        default_level=Permission(autonomy.get("level", Permission.SUPERVISED.value)),
        by_outcome={outcome: Permission(level) for outcome, level in spec.permissions.items()},
        terminal_states=spec.terminal_states,
        checkpoint_sensitive=CHECKPOINT_SENSITIVE in joined,
        checkpoint_terminal=CHECKPOINT_TERMINAL in joined,
        triggers=spec.triggers,
        leavable_states=frozenset(a for a, _ in spec.transitions),
        source=source,
        stamp=stamp,
        unknown_checkpoints=tuple(unknown),
    )


def _closed(source: Path | None, stamp: Stamp, error: str) -> PermissionTable:
    return PermissionTable(Permission.HUMAN_REQUIRED, {}, frozenset(), True, True, (), frozenset(), source, stamp,
                           error)


def permission_table(spec: PalmPaySpec | None = None, path: Path | None = None) -> PermissionTable:
    """Built from the spec as it is on disk now: `path`, else PAYOPS_PALM_SPEC_PATH, else the packaged copy."""
    if spec is not None:
        return from_spec(spec)
    if path is None:
        from payops.settings import Settings

        path = Settings().palm_spec_path
    source = spec_file(path)
    stamp = _stamp(source)
    try:
        loaded = load_spec(path)
    except (SpecError, ValueError) as exc:
        return _closed(source, stamp, str(exc))
    return from_spec(loaded, source, stamp)


def refreshed(table: PermissionTable) -> PermissionTable:
    """The same table while its spec file is unchanged; a freshly loaded one after an edit."""
    if table.source is None or _stamp(table.source) == table.stamp:
        return table
    return permission_table(path=table.source)


def action_levels(table: PermissionTable) -> dict[str, Permission]:
    return {name: table.level(spec) for name, spec in ACTIONS.items()}
