"""Ops chat, the use case: one question in, one grounded answer out (`ask`).

State questions are read from the records directly; the open ones go to the LLM when one is
configured, falling back to the records when it fails.
"""

from __future__ import annotations

from typing import Any

from payops.chat.answers import answer_from_records
from payops.chat.llm import answer_with_llm
from payops.chat.plan import plan_question
from payops.chat.records import ChatAnswer, ChatTools

# Question shapes answered from the records even with an LLM configured (payops.chat.shapes).
RECORD_SHAPES = ("now", "failing", "pending", "in_force", "rolled_back", "harmed", "happened", "unknown_segment",
                 "help")

def ask(question: str, tools: ChatTools, llm: Any | None = None) -> ChatAnswer:
    """Answer one question: through the LLM when there is one (falling back to the records on error)."""
    question = question.strip()
    if not question:
        return ChatAnswer(text="Ask about a decision, a segment or an action, "
                               "e.g. \"what did you do about FNB today?\"")
    if llm is not None and (plan_question(question, tools.known_values(), tools.clock(), tools.tz).intent
                            in RECORD_SHAPES):
        # The state of things is a reading of the records, exact by construction: a model could only
        # paraphrase it (and a small one misquote it). Its tools stay for the open questions.
        answer = answer_from_records(question, tools)
        return answer.model_copy(update={"note": "answered from the records directly "
                                                 "(a state question needs no model)"})
    if llm is not None:
        try:
            return answer_with_llm(question, tools, llm)
        except Exception as exc:  # noqa: BLE001 - any model/API failure falls back to the records
            answer = answer_from_records(question, tools)
            return answer.model_copy(update={"note": f"LLM unavailable ({type(exc).__name__}); "
                                                     "answered from the records directly"})
    return answer_from_records(question, tools)

