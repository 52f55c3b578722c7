"""`payops publish EVENTS.jsonl --to nats://HOST:PORT/STREAM?subject=...`: replay a file onto the event log."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from payops.cli import fail as _fail  # one error line for every command


def _rate(text: str) -> float | None:
    """'max' (as fast as acknowledged), 'realtime' (=1), or N / xN: N times real time."""
    value = text.strip().lower()
    if value in ("max", "fast", "asap"):
        return None
    if value in ("realtime", "real-time", "1x"):
        return 1.0
    try:
        rate = float(value.lstrip("x").rstrip("x"))
    except ValueError:
        _fail(f"--rate takes max, realtime or a speed-up such as x10 (got {text!r})")
        raise
    if not math.isfinite(rate) or rate <= 0:
        _fail("--rate must be a positive, finite speed-up")
    return rate


def publish(
    events: Path = typer.Argument(..., help="A CONTRACT.md §1 JSONL event file."),
    to: str = typer.Option(..., "--to",
                           help="nats://HOST:PORT/STREAM?subject=payments.default (stream made if missing)."),
    rate: str = typer.Option("max", "--rate",
                             help="max (as fast as acknowledged), realtime, or xN (N times real time)."),
    batch_bytes: int = typer.Option(64 << 10, "--batch-bytes", min=0, max=1 << 20,
                                    help="Pack lines into messages up to this size (0: one event per message)."),
    partition: str | None = typer.Option(None, "--partition", help="Fills {partition} in the subject."),
) -> None:
    """Replay an event file onto a NATS JetStream stream at a chosen rate, with a progress bar."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from payops.signals.nats_publish import publish_file
    from payops.signals.nats_source import parse_nats_url
    from payops.signals.sources import SourceError

    speed = _rate(rate)
    try:
        address = parse_nats_url(to, partition or "default")
    except SourceError as exc:
        _fail(str(exc))
        raise
    if not events.is_file():
        _fail(f"no such file: {events}")
    total = events.stat().st_size  # progress in bytes: no extra pass over the file to count its lines
    with Progress(TextColumn("[bold]publish"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task("publish", total=total)
        try:
            result = publish_file(address, events, address.subject, batch_bytes, speed,
                                  lambda n: bar.update(task, advance=n))
        except OSError as exc:
            _fail(f"cannot reach NATS at {address.servers}: {exc.strerror or type(exc).__name__}", code=1)
            raise
        except Exception as exc:  # the server refused (no JetStream, subject outside the stream): one line
            _fail(f"publishing to {address.stream} failed: {type(exc).__name__}", code=1)
            raise
    per_s = result.lines / result.seconds if result.seconds > 0 else float("inf")
    typer.echo(f"published {result.lines} events in {result.messages} messages ({result.bytes} bytes) to "
               f"{address.stream} subject {address.subject} in {result.seconds:.2f}s ({per_s:,.0f} events/s)")
