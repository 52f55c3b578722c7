"""`payops chat`: ask the agent about its decisions (REPL, or one question with --ask). Read-only."""

from __future__ import annotations

from pathlib import Path

import typer

STATE_DIR = typer.Option(None, "--state-dir", help="State directory (default ./.payops or PAYOPS_STATE_DIR).")


def chat(
    ask: str | None = typer.Option(None, "--ask", help="Ask one question, print the answer and exit."),
    tz: str | None = typer.Option(None, "--tz", help="Time zone for times you type and times printed (IANA name; "
                                     "default PAYOPS_DISPLAY_TIMEZONE, else PAYOPS_TIMEZONE)."),
    no_llm: bool = typer.Option(False, "--no-llm",
                                help="Answer from the records only, even when an LLM is configured."),
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Ask why the agent acted, what it did about a segment, or whether an action ever helped.

    Answers come from the audit trail and the lessons (through the LLM when
    PAYOPS_LLM_MODEL is set); the chat can look things up but never act.
    """
    from pydantic import ValidationError

    from payops.chat import ChatError, ChatTools, chat_model_from_settings, zone
    from payops.chat import ask as answer
    from payops.settings import Settings, existing_state_dir

    try:
        settings = Settings(state_dir=state_dir) if state_dir else Settings()
        if not settings.database_url:
            existing_state_dir(settings.state_dir)  # a missing folder or a file: one line from cli_errors
        display_zone = tz or settings.display_zone  # one display zone for people; records stay epoch/UTC
        tools = ChatTools.from_settings(settings, zone(display_zone))
    except (ChatError, ValidationError) as exc:
        typer.echo(f"payops: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    llm = None if no_llm else chat_model_from_settings(settings)

    def reply(question: str) -> None:
        try:
            result = answer(question, tools, llm)
        except ChatError as exc:
            typer.echo(f"payops: {exc}", err=True)
            return
        typer.echo(result.text)
        if result.note:
            typer.echo(f"({result.note})")

    if ask is not None:
        reply(ask)
        return
    typer.echo(f"payops chat — ask about decisions, segments and outcomes (read-only); times in {display_zone}. "
               "Ctrl-D or 'exit' to leave.")
    while True:
        try:
            question = input("payops> ")
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if question.strip().lower() in ("exit", "quit", ":q"):
            return
        if question.strip():
            reply(question)
            typer.echo("")
