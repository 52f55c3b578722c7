"""LLM traffic through the eval's cassettes: record against a live (local) endpoint, replay with it gone.

The reasoner here is a stand-in that calls an OpenAI-compatible endpoint with the
`openai` client (as langchain-openai does) and reports tokens and latency the way
the graph's `llm_calls` carry them. The endpoint is a stub HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from payops.evals.cases import load_case
from payops.evals.llm import cassette, cassette_path
from payops.evals.runner import replay_case
from payops.evals.scoring import Price, score_case
from payops.graph.reasoners.base import Decision
from payops.graph.reasoners.rules import RuleReasoner

pytest.importorskip("vcr")


class _Stub(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:  # noqa: N802
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "agree"}}],
                  "usage": {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class AskingReasoner:
    """The rules decide; on anomalous windows it also asks the endpoint (like the LLM reasoner would)."""

    name = "asking"

    def __init__(self, base_url: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key="sk-test-secret", max_retries=0, timeout=5)
        self.rules = RuleReasoner()

    def decide(self, snapshot, context) -> Decision:
        decision = self.rules.decide(snapshot, context)
        if decision.diagnosis.category.value == "healthy":
            return decision  # no tokens on healthy ticks
        started = time.perf_counter()
        reply = self.client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": f"{decision.diagnosis.summary} — agree?"}])
        call = {"model": reply.model, "input_tokens": reply.usage.prompt_tokens,
                "output_tokens": reply.usage.completion_tokens,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        return Decision(decision.diagnosis, decision.proposal, llm_calls=(call,))


def test_record_then_replay_without_the_endpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    case = load_case(tiny_corpus / "route-known")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        recorded = replay_case(case, lambda s: AskingReasoner(url),
                               cassette=cassette(case, "stub-model", record=True, root=tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    live_calls = _Stub.calls
    assert live_calls >= 1 and recorded.error is None

    tape = cassette_path(case, "stub-model", tmp_path).read_text()
    assert "sk-test-secret" not in tape  # the authorization header is never written

    # The endpoint is gone: every answer must come from the cassette.
    replayed = replay_case(case, lambda s: AskingReasoner(url),
                           cassette=cassette(case, "stub-model", record=False, root=tmp_path))
    assert replayed.error is None and _Stub.calls == live_calls
    first, second = score_case(case, recorded, Price(1.0, 2.0)), score_case(case, replayed, Price(1.0, 2.0))
    assert second.llm_calls == first.llm_calls == live_calls
    assert second.tokens_in == 120 * live_calls and second.tokens_out == 7 * live_calls
    assert second.cost_usd == pytest.approx((120 * 1.0 + 7 * 2.0) * live_calls / 1e6)
    assert second.passed == first.passed


def test_replay_refuses_a_missing_cassette(tiny_corpus: Path, tmp_path: Path) -> None:
    case = load_case(tiny_corpus / "route-known")
    with pytest.raises(FileNotFoundError), cassette(case, "never-recorded", record=False, root=tmp_path):
        pass
