"""A gzip-compressed event file (the held-out generator's and the corpus's events.jsonl.gz) reads like the
plain one; a damaged one is a one-line error that says how many decisions were written before it.

Before: `payops replay events.jsonl.gz` parsed the compressed bytes as lines and answered "no valid
events: 602 lines skipped".
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from payops.signals.sources import SourceError, open_jsonl

START = 1764000000.0


def _lines(n: int) -> bytes:
    return b"".join(orjson.dumps({"ts": START + i * 0.5, "payment_id": f"p{i}", "attempt": 1, "method": "card",
                                  "route": "psp_a", "bank": "ABSA", "issuer": "VISA",
                                  "status": "success" if i % 9 else "failure",
                                  "error_code": None if i % 9 else "INSUFFICIENT_FUNDS", "latency_ms": 300.0})
                     + b"\n" for i in range(n))


def test_a_compressed_file_reads_as_the_plain_one(tmp_path: Path) -> None:
    data = _lines(600)
    plain, packed = tmp_path / "e.jsonl", tmp_path / "e.jsonl.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    a, b = open_jsonl(plain, workers=0), open_jsonl(packed)
    seen = 0
    for end in (START + 60.0, START + 120.0, START + 400.0):
        x, y = a.read_until(end), b.read_until(end)
        assert x.ts.tolist() == y.ts.tolist()
        seen += len(y.ts)
    assert seen == 600 and b.exhausted and b.report.bad_count == 0


def test_a_truncated_compressed_file_is_a_one_line_source_error(tmp_path: Path) -> None:
    packed = gzip.compress(_lines(600))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    src = open_jsonl(cut)
    with pytest.raises(SourceError, match="ends early"):
        src.read_until(START + 1e6)


def test_replay_of_a_damaged_compressed_file_exits_2_with_one_line(tmp_path: Path) -> None:
    packed = gzip.compress(_lines(2000))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])
    out = tmp_path / "d.jsonl"
    payops = Path(sys.executable).parent / "payops"
    run = subprocess.run([str(payops), "replay", str(cut), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "ends early" in lines[0] and "decisions written to" in lines[0]
    assert "Traceback" not in run.stderr
