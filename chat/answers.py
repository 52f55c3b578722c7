"""Ops chat without an LLM: the common question shapes answered from the records, every line
taken from an audit record or a lesson; a question that fits no shape gets the list of shapes."""

from __future__ import annotations

from typing import Any

from payops.chat import shapes
from payops.chat.plan import HARMED, REFUSAL, _describe_filters, _verb, plan_question
from payops.chat.records import WHY_WINDOW_SECONDS, ChatAnswer, ChatTools
from payops.memory.explain import target_text


def answer_from_records(question: str, tools: ChatTools) -> ChatAnswer:
    """Deterministic answers for the common question shapes; every line comes from a record."""
    reference = tools.clock()
    plan = plan_question(question, tools.known_values(), reference, tools.tz)
    lookups: list[dict[str, Any]] = []

    def call(name: str, **args: Any) -> Any:
        lookups.append({"name": name, "args": args})
        return getattr(tools, name)(**args)

    if plan.intent == "refuse":
        return ChatAnswer(text=REFUSAL)
    state_shapes = {
        "now": shapes.answer_now, "failing": shapes.answer_failing, "pending": shapes.answer_pending,
        "in_force": shapes.answer_in_force, "harmed": shapes.answer_harmed, "happened": shapes.answer_happened,
        "unknown_segment": shapes.answer_unknown_segment,
        "rolled_back": lambda p, t: shapes.answer_rolled_back(p, t, with_harm=bool(HARMED.search(question.lower()))),
    }
    if plan.intent in state_shapes:
        lookups.append({"name": plan.intent, "args": {}})
        return state_shapes[plan.intent](plan, tools).model_copy(update={"lookups": lookups})
    if plan.intent == "help":
        return ChatAnswer(text=shapes.HELP)
    if plan.intent == "explain":
        detail = call("get_decision", decision_id=plan.decision_id)
        if detail is None:
            matches = sorted(i for i in tools.decision_ids() if i.startswith(plan.decision_id or ""))
            if len(matches) > 1:
                return ChatAnswer(text=f"{plan.decision_id} matches {len(matches)} decisions ({', '.join(matches[:3])}"
                                       f"{', ...' if len(matches) > 3 else ''}): give more of the id.",
                                  cited=matches[:3], lookups=lookups)
            return ChatAnswer(text=f"No decision {plan.decision_id} in the audit trail.", lookups=lookups)
        return ChatAnswer(text=detail.explanation, cited=[detail.summary.decision_id], lookups=lookups)
    if plan.intent == "track_record":
        found = call("list_lessons", **{k: v for k, v in (("tool", plan.tool), ("target_dims", plan.dims),
                                                           ("segment", plan.segment)) if v})
        what = (plan.tool or "any action") + (f" on {plan.segment}" if plan.segment
                                              else f" on a {plan.dims} target" if plan.dims else "")
        total = sum(found.counts.values())
        if total == 0:
            return ChatAnswer(text=f"No concluded outcome of {what} in the lessons yet, so I can't say it ever helped.",
                              lookups=lookups)
        c = found.counts
        head = ("Yes" if c["helped"] else "No") + f" — {what}: {total} concluded outcome(s): {c['helped']} helped, " \
            f"{c['no_effect']} no effect, {c['harmed']} harmed, {c['inconclusive']} inconclusive."
        return ChatAnswer(text="\n".join([head, *(f"- {lesson.line()}" for lesson in found.lessons)]),
                          cited=[lesson.decision_id for lesson in found.lessons], lookups=lookups)
    if plan.intent == "why":
        if plan.at is not None:
            pool = call("search_decisions", since=plan.at - WHY_WINDOW_SECONDS, until=plan.at + WHY_WINDOW_SECONDS,
                        segment=plan.segment, tool=plan.tool,
                        actions_only=plan.tool != "no_action")
            pool.sort(key=lambda s: abs(s.window_end - plan.at))
        else:
            pool = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=plan.tool,
                        actions_only=plan.tool != "no_action")[::-1]
        if not pool:
            return ChatAnswer(text=f"I found no decision {_describe_filters(plan, tools.tz)} in the audit trail.",
                              lookups=lookups)
        best = pool[0]
        detail = call("get_decision", decision_id=best.decision_id)
        did = (f"I {_verb(best.tool)} {target_text(best.target)}" if best.status != "escalated" else
               f"I asked for approval to run {best.tool} on {target_text(best.target)}"
               + (f" ({best.approval} by {best.approver})" if best.approval else " (no answer recorded)"))
        head = f"At {best.at} {did} (decision {best.decision_id}) because: {best.summary}"
        others = [s.decision_id for s in pool[1:4]]
        tail = [f"Other matching decisions: {', '.join(others)}"] if others else []
        return ChatAnswer(text="\n".join([head, "", detail.explanation, *tail]), cited=[best.decision_id, *others],
                          lookups=lookups)
    # what_did / overview
    found = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=plan.tool,
                 actions_only=True)
    if not found:
        seen = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=None,
                    actions_only=False)
        if not seen:
            return ChatAnswer(text=f"No decision {_describe_filters(plan, tools.tz)} in the audit trail.",
                              lookups=lookups)
        reasons = sorted({s.no_action_reason or "" for s in seen} - {""})
        return ChatAnswer(text=f"I took no action {_describe_filters(plan, tools.tz)}: {len(seen)} decision(s), "
                               "none acted" + (f" ({'; '.join(reasons[:3])})" if reasons else "")
                               + ". Latest:\n- " + seen[-1].line(),
                          cited=[seen[-1].decision_id], lookups=lookups)
    head = f"What I did {_describe_filters(plan, tools.tz)}: {len(found)} action(s)."
    return ChatAnswer(text="\n".join([head, *(f"- {s.line()}" for s in found)]), cited=[s.decision_id for s in found],
                      lookups=lookups)


