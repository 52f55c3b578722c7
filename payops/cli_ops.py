"""Operator commands: approvals, audit trail, lessons, "why did you act?"."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import typer

from payops.cli_errors import fail as _fail  # the one way a command gives up
from payops.settings import Settings, existing_state_dir

audit_app = typer.Typer(no_args_is_help=True, add_completion=False)
lessons_app = typer.Typer(no_args_is_help=True, add_completion=False)
notify_app = typer.Typer(no_args_is_help=True, add_completion=False)


API_KEY = typer.Option(None, "--api-key", envvar="PAYOPS_API_KEY", show_envvar=True,
                       help="Your operator API key (`payops keys create --role operator`): who answers.")




def _settings(state_dir: Path | None) -> Settings:
    return Settings(state_dir=state_dir) if state_dir else Settings()


def _require_state(settings: Settings) -> None:
    if not settings.database_url:  # PostgreSQL: the state is in the database
        existing_state_dir(settings.state_dir)  # a missing folder or a file: one line from cli_errors


def _services(state_dir: Path | None):  # noqa: ANN202 - internal
    from payops.graph.runner import Agent
    from payops.graph.services import build_services

    settings = _settings(state_dir)
    _require_state(settings)
    services = build_services(settings)
    Agent.durable(services)  # attaches the approval graph on the shared checkpointer
    return services


STATE_DIR = typer.Option(None, "--state-dir", help="State directory (default ./.payops or PAYOPS_STATE_DIR).")


# -- approvals ---------------------------------------------------------------------

def pending(state_dir: Path | None = STATE_DIR) -> None:
    """List approval requests waiting for a human."""
    from payops.memory.approvals import PENDING

    svc = _services(state_dir)
    rows = svc.approvals.by_status(PENDING)
    if not rows:
        typer.echo("no pending approval requests")
    from payops.render import printable  # labels come from the feed: escaped, one line stays one line

    now = svc.clock()
    for a in rows:
        p = a.request["proposal"]
        d = a.request["diagnosis"]
        target = ",".join(f"{k}={v}" for k, v in sorted(p["target"].items())) or "all"
        typer.echo(printable(f"{a.decision_id}  {p['tool']} on {target}  [{d['category']} conf {d['confidence']:.2f}]  "
                             f"expires in {max(0, a.expires_at - now):.0f}s"))
        for why in a.request.get("why_approval", []):
            typer.echo(printable(f"    why approval: {why}"))
    _print_dead_letters(svc.settings)


def _print_dead_letters(settings: Settings) -> None:
    """Notifications the webhook never delivered: shown with the approvals, since most are approval requests."""
    from payops.guardrails.dead_letters import FILE_NAME, DeadLetters
    from payops.memory.explain import when

    if not (settings.state_dir / FILE_NAME).exists():
        return
    box = DeadLetters.in_state_dir(settings.state_dir)
    try:
        letters = box.list()
    finally:
        box.close()
    if not letters:
        return
    typer.echo(f"{len(letters)} webhook notification(s) not delivered, kept in dead letters "
               "(send again: `payops notify retry`):")
    for d in letters:
        typer.echo(f"  {d.decision_id or '-'}  {d.kind}  failed {d.failures}x, "
                   f"last {when(d.failed_at, settings.display_tz())}: {d.reason}")


def _answer(decision_id: str, approved: bool, note: str | None, api_key: str | None,
            state_dir: Path | None) -> None:
    """graph.approval.answer (the use case POST /v1/approvals/... calls too), as the operator whose key is given."""
    from payops.api.keys import ApiKeyError, ApiKeyStore
    from payops.graph import approval

    svc = _services(state_dir)  # first: a missing state or audit key is the error to report, not the key
    if not api_key:
        _fail("an operator API key is needed to answer: --api-key or PAYOPS_API_KEY")
    keys = ApiKeyStore.in_state_dir(_settings(state_dir).ensure_state_dir())
    try:
        approver = keys.authenticate_operator(api_key).principal
        done = approval.answer(svc, decision_id, approved=approved, approver=approver, note=note, operators=keys)
    except ApiKeyError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    except (approval.ApproverRefused, approval.ApprovalsUnavailable, approval.ApprovalAmbiguous,
            approval.ApprovalNotFound, approval.ApprovalNotPending, approval.BadAnswer) as exc:
        _fail(str(exc))  # ApprovalExpired too (a kind of not pending): "... recorded as expired"
        raise  # unreachable: _fail exits
    finally:
        keys.close()
    verb = "approved; the agent applies it on its next tick" if done.status == "approved" else done.status
    typer.echo(f"{done.decision_id}: {verb}")


def approve(decision_id: str = typer.Argument(..., help="Decision id (or an unambiguous prefix)."),
            note: str | None = typer.Option(None, "--note"),
            api_key: str | None = API_KEY, state_dir: Path | None = STATE_DIR) -> None:
    """Approve a pending action (as the operator whose API key is given; recorded in the audit trail)."""
    _answer(decision_id, True, note, api_key, state_dir)


def reject(decision_id: str = typer.Argument(...), note: str | None = typer.Option(None, "--note"),
           api_key: str | None = API_KEY, state_dir: Path | None = STATE_DIR) -> None:
    """Reject a pending action (as the operator whose API key is given)."""
    _answer(decision_id, False, note, api_key, state_dir)


def why(decision_id: str = typer.Argument(..., help="Decision id (or an unambiguous prefix)."),
        state_dir: Path | None = STATE_DIR) -> None:
    """Explain one decision from its audit record (deterministic, no LLM)."""
    from payops.memory.explain import explain_decision
    from payops.memory.stores import open_audit

    settings = _settings(state_dir)
    _require_state(settings)
    audit = open_audit(settings)
    typer.echo(explain_decision(audit.get(_resolve_decision(audit, decision_id)), settings.display_tz()))


# An operator types a short id as `approve` accepts it; a prefix this short is ambiguous by design.
MIN_PREFIX = 3
AMBIGUOUS_SHOWN = 3


def _resolve_decision(audit, text: str) -> str:  # noqa: ANN001 - AuditLog or a read view of it
    """The full decision id for an id or an unambiguous prefix; a one-line error otherwise."""
    text = text.strip()
    if audit.get(text):
        return text
    matches: list[str] = []
    if len(text) >= MIN_PREFIX:
        for e in audit.entries("decision"):
            if e.decision_id.startswith(text) and e.decision_id not in matches:
                matches.append(e.decision_id)
    if not matches:
        _fail(f"no decision {text} in the audit trail")
    if len(matches) > 1:
        shown = ", ".join(matches[:AMBIGUOUS_SHOWN]) + (", ..." if len(matches) > AMBIGUOUS_SHOWN else "")
        _fail(f"'{text}' matches {len(matches)} decisions ({shown}); give more of the id")
    return matches[0]


def register_ops(app: typer.Typer) -> None:
    app.command()(pending)
    app.command()(approve)
    app.command()(reject)
    app.command()(why)


# -- audit --------------------------------------------------------------------------

def _audit(state_dir: Path | None):  # noqa: ANN202 - the AuditLog; its module is imported lazily
    from payops.memory.stores import open_audit
    from payops.storage.keys import KeyProblem

    settings = _settings(state_dir)
    _require_state(settings)
    try:
        return open_audit(settings)
    except KeyProblem as exc:  # data without its key: refuse in one line, never make a new key
        _fail(str(exc), 1)


def _palm_store(settings: Settings):  # noqa: ANN202 - the palm-pay store, if palm-pay has any state
    from payops.palmpay.options import PalmPayOptions
    from payops.palmpay.store import open_store

    options = PalmPayOptions.from_settings(settings)
    if not options.database_url and not options.database_path.exists():
        return None
    return open_store(options)


def _palm_seal_keys(settings: Settings):  # noqa: ANN202 - palmpay.sealing.SealKeys, imported lazily
    from payops.memory.stores import audit_key_chain
    from payops.palmpay.sealing import seal_keys

    return seal_keys(settings.state_dir, chain=audit_key_chain(settings),
                     checkpoint_path=settings.audit_checkpoint_path)


@audit_app.command("verify")
def audit_verify(state_dir: Path | None = STATE_DIR) -> None:
    """Check the agent's trail, the palm-pay audit log and the PII access log; exits 1 naming the log and the record."""
    from payops.palmpay.sealing import verify_logs
    from payops.storage.keys import KeyProblem

    settings = _settings(state_dir)
    result = _audit(state_dir).verify()
    broken = False
    if result.ok:
        legacy = f" ({result.legacy} in the legacy unkeyed segment)" if result.legacy else ""
        typer.echo(f"agent audit trail intact: {result.count} records{legacy}, "
                   f"{result.checkpoints} signed checkpoint(s), {result.superseded} revised by a later record; "
                   f"head hash {result.head_hash}")
    else:
        broken = True
        which = f" (decision {result.first_bad_decision})" if result.first_bad_decision else ""
        typer.echo(f"agent audit trail BROKEN at record {result.first_bad_seq}{which}: {result.reason}", err=True)
    store = _palm_store(settings)
    if store is not None:
        try:
            checks = verify_logs(store, _palm_seal_keys(settings))
        except KeyProblem as exc:
            _fail(str(exc), 1)
        finally:
            store.close()
        for check in checks:
            if check.ok:
                unsealed = (f", {check.count - check.sealed} written since the last checkpoint"
                            if check.count > check.sealed else "")
                typer.echo(f"{check.title} intact: {check.count} records, "
                           f"{check.checkpoints} signed checkpoint(s){unsealed}")
            else:
                broken = True
                where = f" at id {check.at_id}" if check.at_id is not None else ""
                typer.echo(f"{check.title} BROKEN{where}: {check.reason}", err=True)
    if broken:
        raise typer.Exit(1)


@audit_app.command("seal")
def audit_seal(state_dir: Path | None = STATE_DIR) -> None:
    """Sign a checkpoint of every log now (cron: the rows written since the last one are at stake until then)."""
    from payops.palmpay.sealing import seal_logs
    from payops.storage.keys import KeyProblem

    settings = _settings(state_dir)
    audit = _audit(state_dir)
    wrote = audit.checkpoint()
    audit.close()
    typer.echo(f"agent audit trail: {'checkpoint written' if wrote else 'nothing new to seal'}")
    store = _palm_store(settings)
    if store is None:
        return
    try:
        sealed = seal_logs(store, _palm_seal_keys(settings))
    except KeyProblem as exc:
        _fail(str(exc), 1)
    finally:
        store.close()
    for log, n in sealed.items():
        typer.echo(f"{log}: {n} record(s) sealed")


@audit_app.command("show")
def audit_show(decision_id: str = typer.Argument(..., help="Decision id (or an unambiguous prefix), or #SEQ for one "
                                                           "record."),
               jsonl: bool = typer.Option(False, "--jsonl",
                                          help="One compact JSON object per line instead of one JSON list."),
               state_dir: Path | None = STATE_DIR) -> None:
    """Print the records of one decision (decision, approval, applied, rollback...) as one JSON list."""
    audit = _audit(state_dir)
    if decision_id.startswith("#") and decision_id[1:].isdigit():
        entries = audit.at_seq(int(decision_id[1:]))
        if not entries:
            _fail(f"no record {decision_id} in the audit trail")
    else:
        entries = audit.get(_resolve_decision(audit, decision_id))
    # `at` stays epoch seconds (machine); `time` is the same instant in the display zone, named, for a person.
    from payops.memory.explain import when

    tz = _settings(state_dir).display_tz()
    rows = [{"seq": e.seq, "decision_id": e.decision_id, "kind": e.kind, "at": e.at, "time": when(e.at, tz),
             "hash": e.hash, "record": e.record} for e in entries]
    if jsonl:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
    else:
        typer.echo(json.dumps(rows, indent=2))


@audit_app.command("tail")
def audit_tail(n: int = typer.Option(10, "-n", min=1), state_dir: Path | None = STATE_DIR) -> None:
    """The last N records, one line each."""
    for e in _audit(state_dir).tail(n):
        r = e.record
        if e.kind == "decision":
            d, p, x = r.get("diagnosis") or {}, r.get("proposal") or {}, r.get("execution") or {}
            typer.echo(f"#{e.seq} {e.decision_id} {d.get('category')} {d.get('confidence')} {p.get('tool')} "
                       f"{json.dumps(p.get('target'))} -> {x.get('status')}")
        elif e.kind == "approval":
            typer.echo(f"#{e.seq} {e.decision_id} approval {r.get('status', '')} by {r.get('approver', '-')}"
                       + (f" ({r['note']})" if r.get("note") else ""))
        elif e.kind in ("approved_action", "rollback", "reconcile"):
            x = r.get("execution") or {}
            what = r.get("outcome") or x.get("status") or ""
            typer.echo(f"#{e.seq} {e.decision_id} {e.kind} {r.get('tool')} {json.dumps(r.get('target'))} -> {what}"
                       + (f" (approved by {r['approver']})" if r.get("approver") else ""))
        else:
            typer.echo(f"#{e.seq} {e.decision_id} {e.kind} {r.get('status') or r.get('verdict') or ''}".rstrip())


# -- lessons ------------------------------------------------------------------------

def _lessons(state_dir: Path | None):  # noqa: ANN202 - a LessonStore, imported lazily
    """The lesson store the agent writes (SqliteStore in the state directory, or PostgresStore)."""
    from payops.memory.lessons import LessonStore
    from payops.memory.stores import open_lesson_store

    settings = _settings(state_dir)
    _require_state(settings)
    return LessonStore(open_lesson_store(settings))


@lessons_app.command("list")
def lessons_list(category: str | None = typer.Option(None, "--category",
                                                    help="issuer, network, config, security, user."),
                 verdict: str | None = typer.Option(None, "--verdict", help="helped, no_effect, harmed, inconclusive."),
                 tool: str | None = typer.Option(None, "--tool", help="e.g. reroute_traffic."),
                 state_dir: Path | None = STATE_DIR) -> None:
    """One line per lesson, oldest first."""
    from payops.memory.explain import when

    tz = _settings(state_dir).display_tz()
    lessons = _lessons(state_dir).list(category, verdict=verdict, tool=tool)
    if not lessons:
        typer.echo("no lessons" + (" matching those filters" if category or verdict or tool else " yet"))
        return
    for lesson in lessons:
        typer.echo(f"{when(lesson.created_at, tz)}  {lesson.decision_id}  {lesson.category:8s} {lesson.tool:20s} "
                   f"{lesson.target_key:28s} {lesson.verdict}" + (" (rolled back)" if lesson.rolled_back else "")
                   + ((" (imported, decided here)" if lesson.verified else " (imported)")
                      if lesson.origin == "imported" else ""))


@lessons_app.command("show")
def lessons_show(decision_id: str = typer.Argument(..., help="Decision id (or an unambiguous prefix)."),
                 state_dir: Path | None = STATE_DIR) -> None:
    """One lesson as JSON."""
    lesson = _lessons(state_dir).find(decision_id)
    if lesson is None:
        _fail(f"no lesson {decision_id}")
    typer.echo(json.dumps(lesson.model_dump(mode="json"), indent=2))


@lessons_app.command("export")
def lessons_export(out: Path = typer.Option(..., "--out", help="JSON file to write (a list of lessons)."),
                   state_dir: Path | None = STATE_DIR) -> None:
    """Every lesson to a JSON file (to move memory between deployments)."""
    records = _lessons(state_dir).export()
    try:
        out.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}")
    typer.echo(f"exported {len(records)} lessons to {out}")


def _operator(api_key: str | None, state_dir: Path | None, what: str) -> str:
    """The authenticated operator's principal (operator:<key id>) for a CLI write; never typed text."""
    from payops.api.keys import ApiKeyError, ApiKeyStore

    if not api_key:
        _fail(f"an operator API key is needed to {what}: --api-key or PAYOPS_API_KEY")
    keys = ApiKeyStore.in_state_dir(_settings(state_dir).ensure_state_dir())
    try:
        return keys.authenticate_operator(api_key).principal
    except ApiKeyError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    finally:
        keys.close()


@lessons_app.command("import")
def lessons_import(path: Path = typer.Argument(..., help="A JSON file from `payops lessons export`."),
                   api_key: str | None = API_KEY, state_dir: Path | None = STATE_DIR) -> None:
    """Import lessons: all or nothing, marked as imported (trusted less unless this audit trail holds their
    decisions), and audited (the operator whose API key is given, how many, the file's SHA-256)."""
    import hashlib
    import time

    from payops.memory.lessons import Lesson, LessonImportError
    from payops.memory.stores import open_audit
    from payops.tools.actions import ACTIONS

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _fail(f"no such file: {path}")
    except IsADirectoryError:
        _fail(f"is a directory, not a lesson file: {path}")
    except OSError as exc:
        _fail(f"cannot read {path}: {(exc.strerror or 'refused').lower()}", 1)
    try:
        records = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _fail(f"{path} is not JSON (at byte {exc.pos}); nothing was imported")
    settings = _settings(state_dir)
    _require_state(settings)
    actor = _operator(api_key, state_dir, "import lessons")
    store = _lessons(state_dir)
    audit = open_audit(settings)
    try:
        def in_audit(lesson: Lesson) -> bool:  # the decision happened here, and proposed that very tool
            return any(e.kind == "decision" and ((e.record.get("proposal") or {}).get("tool") == lesson.tool)
                       for e in audit.get(lesson.decision_id))

        now = time.time()
        try:
            result = store.import_lessons(records, at=now, known_tools=ACTIONS, in_audit=in_audit)
        except LessonImportError as exc:
            _fail(f"{path}: {exc}")
        digest = hashlib.sha256(data).hexdigest()
        audit.append(f"lessons-import-{int(now)}-{digest[:12]}", "lessons_import", now,
                     {"actor": actor, "count": result.count, "verified": result.verified, "file_name": path.name,
                      "file_sha256": digest})
    finally:
        audit.close()
    typer.echo(f"imported {result.count} lessons ({result.verified} of them decided here; the other "
               f"{result.count - result.verified} count a quarter of the agent's own); audited as {actor}")


# -- notifications ------------------------------------------------------------------

@notify_app.command("retry")
def notify_retry(state_dir: Path | None = STATE_DIR) -> None:
    """Send the dead letters again to PAYOPS_WEBHOOK_URL (same idempotency keys); delivered ones are removed."""
    from payops.guardrails.dead_letters import FILE_NAME, DeadLetters
    from payops.guardrails.notify import retry_dead_letters

    settings = _settings(state_dir)
    _require_state(settings)
    if not (settings.state_dir / FILE_NAME).exists():
        typer.echo("no dead letters")
        return
    if not settings.webhook_url:
        _fail("PAYOPS_WEBHOOK_URL is not set: nowhere to send the dead letters")
    box = DeadLetters.in_state_dir(settings.state_dir)
    try:
        delivered, failing = retry_dead_letters(settings.webhook_url, box)
    finally:
        box.close()
    typer.echo(f"delivered {delivered}; {failing} still failing (kept)")
    if failing:
        raise typer.Exit(1)
