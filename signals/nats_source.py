"""Payment events from a NATS JetStream stream: `--source nats://HOST:PORT/STREAM?subject=payments.>`.

A message carries JSON lines (CONTRACT §1): one event, or a JSONL batch of events (header
`Payops-Batch: N`; `payops publish` batches up to a size setting, because one event per
message tops out near 45 k msg/s here). The source hands events out exactly as `LineSource`
does for the same lines in the same order, so decisions from the log equal `payops replay`'s.

Delivery is at least once, with one durable pull consumer per deployment partition
(`payops-<partition>`, filtered to the partition's subject: `{partition}` in `subject` is
replaced by the partition's name). Acknowledgement policy ALL: acking one message acks every
earlier one. A fetched group of messages is acknowledged only once it has been handed to the
window in full and no open window needs it any more: `commit(next_window_start)`, which the
agent calls after the checkpoint of each tick. A killed worker's successor (the partition lock
lets one worker in at a time) re-creates the consumer at the server's ack floor and reads again
what the dead one had not acknowledged: nothing lost. Nothing is counted twice either: each tick's
checkpoint records how far, by stream sequence, the tick had read (`position`), and the successor
drops the redelivered messages that position says were counted, keeping only their events the
windows still to decide need (`_restore`); redeliveries inside one process are dropped by their
stream sequence too.

`?follow=1` waits for new messages (a live deployment); without it the source is exhausted once
no message has come for `idle` seconds (default 1): a finished log, a cron tick, the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from .batch import EventBatch, concat
from .events import ParseReport
from .jsonl import JsonlParser
from .log_source import LogSource
from .sources import SourceError

_log = logging.getLogger(__name__)

BATCH_HEADER = "Payops-Batch"
# Messages per fetch: one parse call each, so that single-event messages cost one parse per
# fetch, not per message. The group is also the unit of acknowledgement.
FETCH_MESSAGES = 512
FETCH_WAIT_SECONDS = 0.25  # one empty fetch: short, so a caught-up source answers quickly
DEFAULT_IDLE_SECONDS = 1.0  # without follow: this long with no message means the log is drained
CONNECT_SECONDS = 5.0
# The consumer is re-created at the ack floor whenever a worker starts, so redelivery after a
# time-out is never how a successor gets its messages: a long ack wait only avoids needless
# redeliveries while a window holds its messages unacknowledged.
ACK_WAIT_SECONDS = 3600.0
MAX_ACK_PENDING = 1_000_000  # a window's worth of single-event messages must fit


@dataclass(frozen=True)
class NatsAddress:
    servers: str
    stream: str
    subject: str
    follow: bool
    idle_seconds: float

    @property
    def label(self) -> str:
        return f"{self.servers}/{self.stream}?subject={self.subject}"


def parse_nats_url(url: str, partition: str = "default") -> NatsAddress:
    """nats://HOST:PORT/STREAM?subject=S&follow=1&idle=SECONDS; SourceError with a one-line reason."""
    parsed = urlparse(url)
    if parsed.scheme != "nats" or not parsed.hostname:
        raise SourceError(f"not a NATS address: {url} (nats://HOST:PORT/STREAM?subject=...)")
    stream = parsed.path.strip("/")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", stream or ""):
        raise SourceError("a NATS source names its stream: nats://HOST:PORT/STREAM (letters, digits, _ and -)")
    query = parse_qs(parsed.query)
    subject = (query.get("subject") or ["payments.>"])[0].replace("{partition}", partition)
    try:
        idle = float(query["idle"][0]) if query.get("idle") else DEFAULT_IDLE_SECONDS
    except ValueError:
        raise SourceError("idle= takes seconds, e.g. idle=2") from None
    if not (0 < idle < 3600):
        raise SourceError("idle= takes seconds between 0 and 3600")
    follow = (query.get("follow") or ["0"])[0].lower() in ("1", "true", "yes")
    return NatsAddress(f"nats://{parsed.hostname}:{parsed.port or 4222}", stream, subject, follow, idle)


async def quiet_errors(exc: Exception) -> None:
    """nats-py logs every connection error with its traceback by default; the source reports a failure in
    one line itself (SourceError), so the client's own log keeps only a debug line."""
    _log.debug("nats: %s", exc)


@dataclass(frozen=True)
class _Resumed:
    """A dead worker's last checkpointed position (NatsSource.position), and the windows still to decide."""

    handed_seq: int
    handed_events: int
    parsed: int
    start: float  # the next window's start: events before it were counted (decided, or late)
    read_to: float  # where the dead worker's last read ended


def _seq(msg: Any) -> int:
    return int(msg.metadata.sequence.stream)


def consumer_name(partition: str) -> str:
    return "payops-" + re.sub(r"[^A-Za-z0-9_-]", "_", partition)


class _Loop:
    """An asyncio loop on its own thread: nats-py is async, the agent's sources are not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="payops-nats", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Cancel the client's own tasks (reader, pinger, flusher) before the loop goes, so none is left pending."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):  # a loop that cannot even cancel: stopping it is all that is left
            self.run(cancel_all(), CONNECT_SECONDS)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class NatsSource(LogSource):
    """A `Source` over a JetStream stream (see the module docstring)."""

    def __init__(self, address: NatsAddress, partition: str = "default") -> None:
        super().__init__(address.label)
        self.address = address
        self.partition = partition
        self._max_seq = 0
        self.redelivered_dropped = 0  # delivered twice to this process (a fetch after an ack time-out)
        self._resumed: _Resumed | None = None
        self._scratch = JsonlParser(ParseReport())  # parses whose bad lines were reported already
        self.acked_seq = 0
        self._loop = _Loop()
        try:
            self._loop.run(self._open(), CONNECT_SECONDS * 2)
        except SourceError:
            self._loop.stop()
            raise
        except Exception as exc:  # connection refused, no such stream: one line, no internals
            self._loop.stop()
            raise SourceError(f"cannot read NATS stream {address.stream} at {address.servers}: "
                              f"{type(exc).__name__}") from None

    async def _open(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        self._nc = await nats.connect(self.address.servers, connect_timeout=CONNECT_SECONDS, max_reconnect_attempts=2,
                                      allow_reconnect=True, error_cb=quiet_errors)
        self._js = self._nc.jetstream()
        durable = consumer_name(self.partition)
        try:
            await self._js.stream_info(self.address.stream)
        except NotFoundError:
            raise SourceError(f"no NATS stream {self.address.stream} at {self.address.servers}") from None
        floor = 0
        try:
            info = await self._js.consumer_info(self.address.stream, durable)
            floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
            await self._js.delete_consumer(self.address.stream, durable)
        except NotFoundError:
            pass
        self.acked_seq = floor
        config = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.ALL, filter_subject=self.address.subject,
            ack_wait=ACK_WAIT_SECONDS, max_ack_pending=MAX_ACK_PENDING,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if floor else DeliverPolicy.ALL,
            opt_start_seq=floor + 1 if floor else None,
        )
        await self._js.add_consumer(self.address.stream, config)
        self._sub = await self._js.pull_subscribe_bind(durable, self.address.stream)

    def _call(self, coro: Any, timeout: float) -> Any:
        """One call to the server mid-run; a lost connection is a one-line SourceError, not a traceback."""
        try:
            return self._loop.run(coro, timeout)
        except Exception as exc:
            raise SourceError(f"NATS stream {self.address.stream} at {self.address.servers}: "
                              f"{type(exc).__name__}") from None

    async def _fetch(self) -> list[Any]:
        from nats.errors import TimeoutError as NatsTimeout

        try:
            return list(await self._sub.fetch(FETCH_MESSAGES, timeout=FETCH_WAIT_SECONDS))
        except NatsTimeout:
            return []

    def _fill(self, end_ts: float) -> bool:
        """Fetch the next group into pending; False when the log is drained (without follow)."""
        if self._eof:
            return False
        idle = 0.0
        while True:
            msgs = self._call(self._fetch(), FETCH_WAIT_SECONDS + CONNECT_SECONDS)
            fresh, seqs = [], []
            for m in msgs:
                seq = int(m.metadata.sequence.stream)  # (metadata parses the reply subject: once a message)
                if seq <= self._max_seq:
                    self.redelivered_dropped += 1
                    continue
                self._max_seq = seq
                fresh.append(m)
                seqs.append(seq)
            if fresh and self._resumed is not None and seqs[0] <= self._resumed.parsed:
                fresh, seqs = self._restore(fresh, seqs)
                if not fresh:
                    return True
            if fresh:
                self._add_messages(fresh, seqs)
                return True
            if msgs:
                continue  # only redeliveries: fetch again
            idle += FETCH_WAIT_SECONDS
            # Drained: quiet for `idle` seconds and the server holds nothing undelivered for us (an empty
            # fetch on a busy machine is not the end of the log).
            if not self.address.follow and idle >= self.address.idle_seconds and self.lag() == 0:
                self._eof = True
                return False

    def _add_messages(self, msgs: list[Any], seqs: list[int]) -> None:
        """One group of messages parsed in one call, with each message's events (for `position`)."""
        datas = [m.data if m.data.endswith(b"\n") or not m.data else m.data + b"\n" for m in msgs]
        bad_before = self.report.bad_count
        group = self._add_group(b"".join(datas), seqs[-1], msgs[-1])
        counts = [d.count(b"\n") for d in datas]  # when every line is an event, a message's events are its lines
        if self.report.bad_count != bad_before or sum(counts) != group.size:
            # A bad line, or a blank one (skipped, not bad): count each message's events apart (rare, and
            # it changes nothing counted; a wrong count here would misplace the resume cut).
            counts = [len(self._scratch.parse(d)) for d in datas]
        group.seqs = np.asarray(seqs, dtype=np.int64)
        group.ends = np.cumsum(np.asarray(counts, dtype=np.int64))

    def _restore(self, msgs: list[Any], seqs: list[int]) -> tuple[list[Any], list[int]]:
        """Messages a dead worker had read before its last checkpoint, redelivered: their counted part is dropped.

        A message it had handed out in full is a duplicate: its bad lines were reported and its events
        counted (in a decided window, or as late) already, so nothing of it is counted again; only its
        events the windows still to decide need (at or after `start`, before the read bound `read_to`;
        past it they were discarded as ahead of the clock) go back to the window, as they sat in the dead
        worker's. Of the message it was cut in, the events before the cut are treated so, the rest are new.
        A message read (parsed: bad lines reported) but not handed out is new, apart from its bad lines.
        Returns the messages read for the first time (and their sequences).
        """
        rec = self._resumed
        assert rec is not None
        restored: list[EventBatch] = []
        last = None
        for i, (m, seq) in enumerate(zip(msgs, seqs, strict=True)):
            if seq > rec.parsed:
                self._flush_restored(restored, last)
                return msgs[i:], seqs[i:]
            batch = self._scratch.parse(m.data if m.data.endswith(b"\n") or not m.data else m.data + b"\n")
            self._next_line_no += self._scratch.line_count
            counted = len(batch) if seq < rec.handed_seq else rec.handed_events if seq == rec.handed_seq else 0
            if seq < rec.handed_seq or counted:  # handed out (in part, when cut in it) before the checkpoint
                self.duplicates += 1
                head = batch.take(slice(0, counted))
                keep = np.flatnonzero((head.ts >= rec.start) & (head.ts < rec.read_to))
                restored.append(head.take(keep))
                last = m
            if counted < len(batch) or seq >= rec.handed_seq and not len(batch):  # never handed out: new
                self._flush_restored(restored, last)
                restored, last = [], None
                rest = batch.take(slice(counted, None))
                self.report.lines += len(rest)  # counted as read here, as a first parse would have
                self.report.accepted += len(rest)
                group = self._add_batch(rest, seq, m)  # (its bad lines were reported already)
                group.seqs, group.ends, group.first_offset = np.array([seq]), np.array([len(rest)]), counted
        self._flush_restored(restored, last)
        return [], []

    def _flush_restored(self, restored: list[EventBatch], last: Any) -> None:
        """The restored events of consecutive duplicates, as one group acknowledged with the last of them."""
        if last is None:
            return
        self._add_batch(concat(restored), _seq(last), last)

    def position(self) -> dict[str, Any]:
        """What this tick's checkpoint records, so that a successor counts nothing twice.

        Messages are delivered in stream order, so what was handed out to the window is a prefix of them:
        every message before `handed[0]` in full and the first `handed[1]` events of that one (a batch is
        cut where the window's end falls, as a file's lines are). `parsed`: the last message read, whose bad
        lines are reported already. `floor`: the ack floor then (everything up to it is passed).
        """
        handed = None
        for group in self._pending:
            handed = group.handed_frontier()
            if handed is not None:
                break
        seq, events = handed if handed is not None else (self._max_seq + 1, 0)
        return {"floor": self.acked_seq, "handed": [seq, events], "parsed": self._max_seq}

    def skip_to(self, ts: float, read_to: float | None = None, *, position: Any = None) -> None:
        """Resume after a restart. With the checkpoint's `position`, by stream sequence (see `_restore`);
        without one (a checkpoint older than it), by event time as `LogSource.skip_to`."""
        if not isinstance(position, dict) or "handed" not in position:
            super().skip_to(ts, read_to)
            return
        seq, events = (int(x) for x in position["handed"])
        self._resumed = _Resumed(seq, events, int(position.get("parsed", seq)), ts,
                                 float("inf") if read_to is None else max(ts, read_to))

    # -- acknowledgement, lag ---------------------------------------------------------------

    def commit(self, next_window_start: float) -> int:
        """Acknowledge every group handed out in full whose events no open window needs; the new ack floor."""
        last = self.passed(next_window_start)
        if last is not None:
            self._call(last.token.ack(), CONNECT_SECONDS)
            self.acked_seq = last.position
        return self.acked_seq

    def lag(self) -> int:
        """Messages on the partition's subject not yet delivered to this worker."""
        info = self._call(self._sub.consumer_info(), CONNECT_SECONDS)
        return int(info.num_pending or 0)

    def close(self) -> None:
        # Acknowledgements were sent explicitly: nothing to drain. Closing a broken connection fails, and
        # nothing is left to save then.
        with contextlib.suppress(Exception):
            self._loop.run(self._nc.close(), CONNECT_SECONDS)
        self._loop.stop()


def open_nats(url: str, partition: str = "default") -> NatsSource:
    return NatsSource(parse_nats_url(url, partition), partition)
