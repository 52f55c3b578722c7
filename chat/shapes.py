"""Ops chat without an LLM, the state questions of issue 17: what is happening now (platform or a
segment), what is pending approval, which bank / route / terminal / merchant is failing, what
happened in a period, what was rolled back or harmful and why, what is in force and until when,
and — for a question that fits no shape — what the chat can answer.

Every sentence is built from a record (payops.chat.state); figures are quoted as the records hold
them (evidence lines, outcome reasons), so the grounding check finds each one in a cited record.
"""

from __future__ import annotations

from payops.chat.plan import Plan
from payops.chat.records import ChatAnswer, ChatTools, _matches_segment, fmt_time
from payops.chat.state import (
    actions_in_force,
    harmful_outcomes,
    incidents,
    latest_about,
    latest_decision,
    pending_approvals,
    rollbacks,
    window_end,
)
from payops.memory.audit import AuditEntry
from payops.memory.explain import target_text

HELP = ("I answer from the audit trail and the lessons; that question fits none of the shapes I know. "
        "Ask, for example:\n"
        "- what is happening now? / what is the failure rate of FNB?\n"
        "- what is pending approval?\n"
        "- which bank (route, terminal, merchant) is failing?\n"
        "- what did you do about psp_a?\n"
        "- why did you act at 16:06? / why d-1a2b3c?\n"
        "- what happened in the last 30 minutes? / today?\n"
        "- what was rolled back, or harmful, and why?\n"
        "- what is in force now, and until when?\n"
        "- has rerouting ever helped?")
# A dimension word also covers its near kin: "which bank" means a bank or a card issuer.
DIM_KEYS = {"bank": ("bank", "issuer"), "terminal_id": ("terminal_id",), "route": ("route",), "method": ("method",),
            "merchant_id": ("merchant_id", "merchant")}
SHOWN = 10  # lines of one list in an answer; the rest are counted
# "what happened at 16:26?" covers the windows ending within 5 minutes of it: the incident then,
# not the whole half hour a "why ... at" search scans for the nearest action.
AT_SECONDS = 300.0


def _dim_word(dims: str) -> str:
    return {"terminal_id": "terminal", "merchant_id": "merchant"}.get(dims, dims)


def _evidence(e: AuditEntry) -> str:
    return str(((e.record.get("diagnosis") or {}).get("evidence") or [""])[0])


def _summary(e: AuditEntry) -> str:
    return str((e.record.get("diagnosis") or {}).get("summary") or "")


def _as_of(tools: ChatTools, e: AuditEntry) -> str:
    return f"as of the latest decision ({e.decision_id}, window ending {fmt_time(window_end(e), tools.tz)})"


def _no_records() -> ChatAnswer:
    return ChatAnswer(text="No decision at all in the audit trail yet: run the agent (`payops run` or `payops tick`) "
                           "first.")


def answer_now(plan: Plan, tools: ChatTools) -> ChatAnswer:
    last = latest_decision(tools.state())
    if last is None:
        return _no_records()
    if plan.segment:
        about = latest_about(tools.state(), lambda t: _matches_segment(plan.segment, t))
        if about is None:
            return ChatAnswer(text=f"No decision has blamed {plan.segment}: it has not stood out from its reference "
                                   f"in any window. The latest window ({fmt_time(window_end(last), tools.tz)}, "
                                   f"{last.decision_id}): {_evidence(last)}", cited=[last.decision_id])
        if about.decision_id == last.decision_id:
            return ChatAnswer(text=f"{plan.segment} is failing now, {_as_of(tools, last)}: {_evidence(last)}. "
                                   f"{_summary(last)}",
                              cited=[last.decision_id])
        return ChatAnswer(text=f"{plan.segment} is not blamed in the latest window "
                               f"({fmt_time(window_end(last), tools.tz)}, {last.decision_id}: "
                               f"{(last.record.get('diagnosis') or {}).get('category')}). It was last "
                               f"blamed at {fmt_time(window_end(about), tools.tz)} ({about.decision_id}): "
                               f"{_evidence(about)}",
                          cited=[last.decision_id, about.decision_id])
    d = last.record.get("diagnosis") or {}
    head = (f"Traffic is healthy, {_as_of(tools, last)}: {_evidence(last)}." if d.get("category") == "healthy" else
            f"Incident now ({d.get('category')} on {target_text(d.get('target'))}), {_as_of(tools, last)}: "
            f"{_summary(last)} {_evidence(last)}.")
    _, forced = actions_in_force(tools.state())
    waiting = pending_approvals(tools.state(), window_end(last))
    tail = f"In force: {len(forced)} action(s); pending approval: {len(waiting)}."
    return ChatAnswer(text=f"{head}\n{tail}", cited=[last.decision_id])


def answer_failing(plan: Plan, tools: ChatTools) -> ChatAnswer:
    last = latest_decision(tools.state())
    if last is None:
        return _no_records()
    keys = DIM_KEYS.get(plan.dims or "")
    word = _dim_word(plan.dims) if plan.dims else "segment"
    d = last.record.get("diagnosis") or {}
    target = d.get("target") or {}
    now_fits = d.get("category") != "healthy" and (keys is None or any(k in target for k in keys))
    if now_fits:
        head = (f"{target_text(target)} is failing now, {_as_of(tools, last)}: {_evidence(last)}. {_summary(last)}")
    else:
        seen = ("traffic is healthy" if d.get("category") == "healthy"
                else f"it blames {target_text(target)}, not a {word}")
        head = f"No {word} is failing now, {_as_of(tools, last)}: {seen}."
    past = [i for i in incidents(tools.state()) if keys is None or any(k in i.target for k in keys)]
    past = [i for i in past if i.last.decision_id != last.decision_id or not now_fits]
    cited = [last.decision_id]
    lines = [head]
    if past:
        lines.append(f"Earlier, {len(past)} incident(s) blamed a {word}:" if keys
                     else f"Earlier, {len(past)} incident(s):")
        for i in past[-SHOWN:]:
            lines.append(f"- {target_text(i.target)} ({i.category}) from {fmt_time(window_end(i.first), tools.tz)} to "
                         f"{fmt_time(window_end(i.last), tools.tz)}, {len(i.decisions)} window(s), "
                         f"first {i.first.decision_id}; worst {i.worst_id}: {i.worst_evidence}")
            cited += [i.first.decision_id, i.worst_id]
    elif not now_fits:
        lines.append(f"No decision in the audit trail has blamed a {word}.")
    return ChatAnswer(text="\n".join(lines), cited=list(dict.fromkeys(cited)))


def answer_pending(plan: Plan, tools: ChatTools) -> ChatAnswer:
    last = latest_decision(tools.state())
    if last is None:
        return _no_records()
    now = window_end(last)
    waiting = pending_approvals(tools.state(), now)
    if not waiting:
        return ChatAnswer(text=f"Nothing is pending approval, {_as_of(tools, last)}.", cited=[last.decision_id])
    lines = [f"{len(waiting)} action(s) pending approval, {_as_of(tools, last)}:"]
    for w in waiting[:SHOWN]:
        left = max(0.0, w.expires_at - now) / 60
        why = f"; why a human: {'; '.join(w.why)}" if w.why else ""
        lines.append(f"- {w.decision_id}: {w.tool} on {target_text(w.target)} ({w.category}, "
                     f"confidence {w.confidence:.2f}), proposed {fmt_time(w.at, tools.tz)}; "
                     f"expires {fmt_time(w.expires_at, tools.tz)} "
                     f"({left:.0f} min after the latest decision){why}")
    lines.append("Approve or reject with `payops approve ID` / `payops reject ID` (see `payops pending`).")
    return ChatAnswer(text="\n".join(lines), cited=[w.decision_id for w in waiting[:SHOWN]] + [last.decision_id])


def _args_text(tool: str, args: dict) -> str:
    if tool == "reroute_traffic":
        routes = ", ".join(str(r) for r in (args.get("to_routes") or {}))
        return f" ({args.get('percent', 100):g}% to {routes})" if routes else ""
    if tool == "suppress_path":
        return f" (fallback: {args.get('fallback') or 'none'})"
    return ""


def answer_in_force(plan: Plan, tools: ChatTools) -> ChatAnswer:
    last, forced = actions_in_force(tools.state())
    if last is None:
        return _no_records()
    if plan.segment:
        forced = [a for a in forced if _matches_segment(plan.segment, a.target)]
    if not forced:
        about = f" on {plan.segment}" if plan.segment else ""
        return ChatAnswer(text=f"No action is in force{about}, {_as_of(tools, last)}.", cited=[last.decision_id])
    lines = [f"{len(forced)} action(s) in force, {_as_of(tools, last)}:"]
    for a in forced:
        applied = f", applied {fmt_time(a.applied_at, tools.tz)}" if a.applied_at else ""
        until = f"until {fmt_time(a.expires_at, tools.tz)}" if a.expires_at else "until rolled back"
        lines.append(f"- {a.tool} on {target_text(a.target)}{_args_text(a.tool, a.args)} "
                     f"(decision {a.action_id}{applied}) {until}")
    return ChatAnswer(text="\n".join(lines), cited=[a.action_id for a in forced] + [last.decision_id])


def answer_rolled_back(plan: Plan, tools: ChatTools, with_harm: bool) -> ChatAnswer:
    undone = [r for r in rollbacks(tools.state()) if _matches_segment(plan.segment, r.target)
              and (plan.since is None or r.at >= plan.since)]
    done = [r for r in undone if r.status == "executed"]
    proposed = [r for r in undone if r.status != "executed"]
    lines, cited = [], []
    if done:
        lines.append(f"{len(done)} action(s) rolled back:")
        for r in done[-SHOWN:]:
            by = "" if r.by == r.action_id else f" by decision {r.by}"
            lines.append(f"- {fmt_time(r.at, tools.tz)}: {r.tool} on {target_text(r.target)} "
                         f"(decision {r.action_id}) rolled back{by}, because {r.reason}")
            cited += [r.action_id, r.by]
    else:
        lines.append("Nothing was rolled back" + (f" about {plan.segment}" if plan.segment else "") + ".")
    for r in proposed[-SHOWN:]:
        lines.append(f"- a rollback of {r.tool} on {target_text(r.target)} (decision {r.action_id}) was proposed at "
                     f"{fmt_time(r.at, tools.tz)} by decision {r.by} and is {r.status} (not applied), "
                     f"because {r.reason}")
        cited += [r.action_id, r.by]
    answer = ChatAnswer(text="\n".join(lines), cited=list(dict.fromkeys(cited)))
    if with_harm:
        harm = answer_harmed(plan, tools)
        answer = ChatAnswer(text=answer.text + "\n" + harm.text, cited=list(dict.fromkeys(answer.cited + harm.cited)))
    return answer


def answer_harmed(plan: Plan, tools: ChatTools) -> ChatAnswer:
    harmed = [e for e in harmful_outcomes(tools.state())
              if _matches_segment(plan.segment, e.record.get("target") or {})]
    if not harmed:
        verdicts: dict[str, int] = {}
        for e in tools.state().entries("outcome"):
            verdicts[str(e.record.get("verdict"))] = verdicts.get(str(e.record.get("verdict")), 0) + 1
        counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "none concluded yet"
        return ChatAnswer(text=f"No action was judged harmful (outcomes: {counts}).")
    lines = [f"{len(harmed)} action(s) judged harmful:"]
    for e in harmed[-SHOWN:]:
        r = e.record
        rb = r.get("rollback") or {}
        undone = f"; rolled back ({rb.get('status')})" if rb else "; not rolled back"
        who = f", approved by {r['approver']}" if r.get("approver") else ""
        lines.append(f"- {r.get('tool')} on {target_text(r.get('target'))} (decision {e.decision_id}{who}) harmed: "
                     f"{'; '.join(r.get('reasons') or [])}{undone}")
    return ChatAnswer(text="\n".join(lines), cited=[e.decision_id for e in harmed[-SHOWN:]])


def answer_happened(plan: Plan, tools: ChatTools) -> ChatAnswer:
    last = latest_decision(tools.state())
    if last is None:
        return _no_records()
    since = plan.since if plan.since is not None else (plan.at - AT_SECONDS if plan.at is not None else None)
    until = plan.until if plan.until is not None else (plan.at + AT_SECONDS if plan.at is not None else None)
    period = (f"from {fmt_time(since, tools.tz)}" if since is not None else "in the whole audit trail") + \
        (f" to {fmt_time(until, tools.tz)}" if until is not None else f" to {fmt_time(window_end(last), tools.tz)}")
    found = incidents(tools.state(), since, until)
    decided = tools.search_decisions(since=since, until=until, limit=200)
    acted = [s for s in decided if s.tool != "no_action"]
    if not decided:
        return ChatAnswer(text=f"No decision {period}.")
    lines = [f"{period[0].upper() + period[1:]}: {len(decided)} decision(s), {len(found)} incident(s), "
             f"{len(acted)} action(s)."]
    cited: list[str] = []
    for i in found[-SHOWN:]:
        lines.append(f"- incident: {target_text(i.target)} ({i.category}) {fmt_time(window_end(i.first), tools.tz)} to "
                     f"{fmt_time(window_end(i.last), tools.tz)}, {len(i.decisions)} window(s), "
                     f"first {i.first.decision_id}; worst {i.worst_id}: {i.worst_evidence}")
        cited += [i.first.decision_id, i.worst_id]
    for s in acted[-SHOWN:]:
        lines.append(f"- action: {s.line()}")
        cited.append(s.decision_id)
    if not found and not acted:
        lines.append("Traffic was healthy throughout; no action was taken.")
        cited.append(decided[-1].decision_id)
    return ChatAnswer(text="\n".join(lines), cited=list(dict.fromkeys(cited)))


def answer_unknown_segment(plan: Plan, tools: ChatTools) -> ChatAnswer:
    known = tools.known_values()
    names = "; ".join(f"{_dim_word(dim)}s: {', '.join(sorted(values)[:8])}"
                      for dim, values in sorted(known.items()) if values)
    return ChatAnswer(text=f"No decision about '{plan.words[0]}' in the audit trail: it has never been blamed or "
                           "acted on." + (f" Names the records know — {names}." if names else ""))
