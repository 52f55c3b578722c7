"""A local stub of an OpenAI-compatible chat endpoint: answers from a script, records requests.

Used for the answers a real model will not give on demand: malformed tool calls,
HTTP 429, timeouts, an "obedient" model that follows an injected instruction.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(tool: str | None = None, args: dict[str, Any] | None = None, *, raw_args: str | None = None,
               content: str | None = None, prompt_tokens: int = 120, completion_tokens: int = 30) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool is not None:
        arguments = raw_args if raw_args is not None else json.dumps(args or {})
        message["tool_calls"] = [{"id": "call_stub_1", "type": "function",
                                  "function": {"name": tool, "arguments": arguments}}]
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 1780000000, "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


RATE_LIMITED = (429,
                {"error": {"message": "Rate limit reached for requests", "type": "requests",
                           "code": "rate_limit_exceeded"}})


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class StubServer:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    default: Reply | None = None  # when the script runs out
    responder: Any = None  # callable(request body) -> completion body, when set and the script is empty
    base_url: str = ""

    def script(self, *items: Any) -> None:
        for item in items:
            if isinstance(item, Reply):
                self.replies.append(item)
            elif isinstance(item, tuple):
                self.replies.append(Reply(item[0], item[1]))
            else:
                self.replies.append(Reply(200, item))

    def next_reply(self) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        if self.default is not None:
            return self.default
        return Reply(500, {"error": {"message": "stub script exhausted", "type": "server_error"}})


def serve() -> tuple[StubServer, ThreadingHTTPServer]:
    stub = StubServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # /v1/models
            self._send(Reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]}))

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.requests.append({"path": self.path, "body": body, "authorization": self.headers.get("authorization")})
            reply = stub.next_reply() if (stub.replies or stub.responder is None) else Reply(200, stub.responder(body))
            if reply.delay:
                time.sleep(reply.delay)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return stub, server


def _data_block(body: dict[str, Any]) -> dict[str, Any]:
    text = body["messages"][-1]["content"]
    return json.loads(text.split("<data>", 1)[1].split("</data>", 1)[0])


def rule_follower(body: dict[str, Any]) -> dict[str, Any]:
    """A model that agrees with the rule engine's reading and proposes what it would (a well-behaved LLM)."""
    data = _data_block(body)
    if body["tool_choice"] != "auto":
        rules = data["rule_engine"]
        hyp = rules["hypothesis"]
        return completion("report_diagnosis",
                          {"category": rules["category"], "hypothesis": hyp, "summary": rules["summary"],
                                               "evidence": ["agrees with the rule engine"], "confidence": 0.99})
    tool = data["rule_engine_proposed_tool"]
    target = data["target"]
    if tool == "reroute_traffic":
        return completion(tool, {"target": target, "to_routes": data["reroute_destinations"], "percent": 95})
    if tool == "alert_ops":
        return completion(tool, {"target": target, "severity": "critical", "summary": data["diagnosis"]["summary"]})
    if tool == "suppress_path":
        return completion(tool, {"target": target, "fallback": "card"})
    if tool == "adjust_retry_policy":
        return completion(tool, {"target": target, "max_attempts": 2, "backoff_ms": 500})
    return completion("no_action", {"reason": "nothing to do"})
