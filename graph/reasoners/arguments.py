"""The argument policy an LLM's tool call goes through: no stronger than the rules would choose.

A model may pick the tool; the arguments are held to what the rule engine would use on
the same window (selection.py), so a model can never buy a longer TTL, a reroute without
its probe, or a suppression without the fallback customers would otherwise be offered.
The target is the blamed segment's identity: a different one (including `{}`, or no
target, which the schema reads as `{}`, for a blamed segment) is refused, never rewritten.

Pure: raw tool arguments in, (arguments, notes) out, or `ArgumentRefused` with a reason
that names fields, never values (the reason goes back to the model).
"""

from __future__ import annotations

from typing import Any

from payops.errors import BadInput
from payops.models import ProposedAction, target_key
from payops.signals.window import WindowSnapshot

from .base import ReasoningContext
from .selection import PROBE_PERCENT, TRAFFIC_TOOLS, fallback_method

# Tools whose arguments name a segment; alerts may also speak of all traffic.
TARGETED_TOOLS = TRAFFIC_TOOLS | {"alert_ops"}
TTL_TOOLS = TRAFFIC_TOOLS  # the tools the rules give a TTL (Thresholds.action_ttl_seconds)


class ArgumentRefused(BadInput, ValueError):
    """The tool call's arguments break the policy; the message names fields only."""


def check_target(tool: str, args: dict[str, Any], blamed: dict[str, str]) -> None:
    """The action's target must be the blamed segment exactly; an alert may also name all traffic."""
    if tool not in TARGETED_TOOLS:
        return
    given = args.get("target", {})  # the schema's default: {} is all traffic
    if not isinstance(given, dict):
        raise ArgumentRefused("the action's target must be a segment: the blamed one (the diagnosis target)")
    if target_key(given) == target_key(blamed):
        return
    if tool == "alert_ops" and not given:
        return  # an alert about all traffic moves nothing
    if not given:
        raise ArgumentRefused("the action's target must be the blamed segment, not all traffic")
    raise ArgumentRefused("the action's target must be the blamed segment")


def _rules_same(rules: ProposedAction | None, tool: str, target: dict[str, str]) -> ProposedAction | None:
    if rules is not None and rules.tool == tool and target_key(rules.target) == target_key(target):
        return rules
    return None


def apply_policy(tool: str, args: dict[str, Any], blamed: dict[str, str], snapshot: WindowSnapshot,
                 context: ReasoningContext, rules: ProposedAction | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The model's raw arguments held to the rules' policy. Raises ArgumentRefused."""
    check_target(tool, args, blamed)
    out = dict(args)
    notes: list[str] = []
    same = _rules_same(rules, tool, blamed)
    if tool in TTL_TOOLS:
        cap = context.thresholds.action_ttl_seconds
        ttl = out.get("ttl_seconds")
        if ttl is None:
            out["ttl_seconds"] = cap
        elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > cap:
            out["ttl_seconds"] = cap
            notes.append(f"ttl_seconds capped at {cap:g} (the rules' TTL)")
    if tool == "reroute_traffic":
        # The rules leave a probe on the old path (so the agent can see the cause clear), except
        # where they would not (a wrongly routed method never recovers there).
        limit = float(same.args.get("percent", 100.0 - PROBE_PERCENT)) if same else 100.0 - PROBE_PERCENT
        percent = out.get("percent", 100.0)
        if isinstance(percent, (int, float)) and not isinstance(percent, bool) and percent > limit:
            out["percent"] = limit
            notes.append(f"percent capped at {limit:g} (the rules' share; the rest is the probe)")
    if tool == "suppress_path":
        seg = snapshot.segment(**blamed) if blamed else snapshot.total
        offered = same.args.get("fallback") if same else fallback_method(snapshot, seg,
                                                                         context.thresholds.significance_z)
        methods = {m.target["method"] for m in snapshot.by_dimension("method")}
        given = out.get("fallback")
        if given is None and offered:
            out["fallback"] = offered
            notes.append("fallback set to the method the rules would offer")
        elif given is not None and given not in methods:
            raise ArgumentRefused("fallback must be a payment method seen in this window, or null")
    return out, tuple(notes)
