"""Ops chat: operators' questions about what the agent saw and did, answered from its records.

Read-only by construction. `ChatTools` opens the audit trail and the lesson store
read-only (SQLite `mode=ro`) and offers three lookups — search_decisions,
get_decision, list_lessons. Nothing here holds a control plane or a palm-pay
service, so no answer can execute an action; a request to act is refused and
pointed at the approval commands.

With an LLM configured (Settings.llm_model) the model answers through those three
tools (a deterministic first lookup is handed to it, so small local models start
from the right records); without one — or when the LLM fails — `answer_from_records`
answers the common question shapes from the same tools. A model's answer is shown only
when it is grounded (payops.chat.grounding: every decision id and figure in it is in the
records it was built from), followed by its sources rendered from the records; otherwise
the answer from the records is shown, saying so.
"""


from payops.chat.answers import answer_from_records
from payops.chat.grounding import Grounding
from payops.chat.grounding import check as check_grounding
from payops.chat.llm import answer_with_llm, chat_model_from_settings, langchain_tools, run_tool
from payops.chat.plan import REFUSAL, Plan, plan_question
from payops.chat.records import ChatAnswer, ChatError, ChatTools, ReadOnlyAudit, fmt_time, parse_when, zone
from payops.chat.records import _NoAudit as _NoAudit  # private; `as` re-exports it for tests/memory/test_memory_chat
from payops.chat.records import _ReadView as _ReadView  # likewise
from payops.chat.service import ask

__all__ = ["ChatAnswer", "ChatError", "ChatTools", "Plan", "REFUSAL", "ReadOnlyAudit", "answer_from_records",
           "Grounding", "answer_with_llm", "ask", "chat_model_from_settings", "check_grounding", "fmt_time",
           "langchain_tools", "parse_when", "plan_question", "run_tool", "zone"]
