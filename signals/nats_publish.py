"""Replay a JSONL event file onto a NATS JetStream stream (`payops publish`): demos, load tests, tests.

Lines go out in file order, packed into messages of up to `batch_bytes` (header `Payops-Batch: N`;
`batch_bytes=0` sends one event per message). The pace follows the events' own times: `rate=1`
is real time, `rate=N` N times faster, `rate=None` as fast as the server acknowledges.
Malformed lines are published as they are: the agent counts them like bad lines of a file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .nats_source import BATCH_HEADER, NatsAddress, quiet_errors

IN_FLIGHT = 256  # publishes awaiting their acknowledgement at once (gathered: ~40 k msg/s here)


@dataclass
class PublishResult:
    lines: int = 0
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _event_time(line: bytes) -> float | None:
    try:
        ts = orjson.loads(line).get("ts")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(ts) if isinstance(ts, (int, float)) else None


def _messages(path: Path, batch_bytes: int) -> Iterator[tuple[bytes, int, float | None]]:
    """(payload, line count, first event time) per message, in file order."""
    lines: list[bytes] = []
    size = 0
    first_ts: float | None = None
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            if lines and size + len(line) > batch_bytes:
                yield b"".join(lines), len(lines), first_ts
                lines, size, first_ts = [], 0, None
            if first_ts is None:
                first_ts = _event_time(line)
            lines.append(line)
            size += len(line)
    if lines:
        yield b"".join(lines), len(lines), first_ts


async def _publish(address: NatsAddress, path: Path, subject: str, batch_bytes: int, rate: float | None,
                   progress: Callable[[int], None] | None) -> PublishResult:
    """`progress` is called with the bytes of each message as it goes out."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(address.servers, connect_timeout=5, max_reconnect_attempts=2, error_cb=quiet_errors)
    js = nc.jetstream()
    try:
        try:
            await js.stream_info(address.stream)
        except NotFoundError:  # no such stream: make one for the subject's tree
            root = subject.split(".")[0]
            await js.add_stream(name=address.stream, subjects=[f"{root}.>"])
        result = PublishResult()
        started = time.monotonic()
        clock_zero: float | None = None
        inflight: list[asyncio.Future[Any]] = []
        for payload, count, ts in _messages(path, batch_bytes):
            if rate is not None and ts is not None:
                clock_zero = ts if clock_zero is None else clock_zero
                wait = (ts - clock_zero) / rate - (time.monotonic() - started)
                if wait > 0:
                    await asyncio.gather(*inflight)
                    inflight = []
                    await asyncio.sleep(wait)
            headers = {BATCH_HEADER: str(count)} if count > 1 else None
            inflight.append(asyncio.ensure_future(js.publish(subject, payload, headers=headers)))
            if len(inflight) >= IN_FLIGHT:
                await asyncio.gather(*inflight)
                inflight = []
            result.lines += count
            result.messages += 1
            result.bytes += len(payload)
            if progress is not None:
                progress(len(payload))  # bytes sent (a progress bar over the file's size)
        await asyncio.gather(*inflight)
        result.seconds = time.monotonic() - started
        return result
    finally:
        await nc.drain()


def publish_file(address: NatsAddress, path: Path, subject: str, batch_bytes: int = 64 << 10, rate: float | None = None,
                 progress: Callable[[int], None] | None = None) -> PublishResult:
    return asyncio.run(_publish(address, path, subject, batch_bytes, rate, progress))
