"""A local SMS-gateway stand-in: an HTTP server on 127.0.0.1 that records what it is sent."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from payops.palmpay.otp_delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SECRET = b"test-webhook-secret-0123456789abcdef"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_by(self, secret: bytes) -> bool:
        return verify_signature(secret, self.headers.get(TIMESTAMP_HEADER, ""), self.body,
                                self.headers.get(SIGNATURE_HEADER, ""))


@dataclass
class Receiver:
    """`script`: HTTP statuses to answer in turn (then 200); `delay_s`: sleep before answering."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def codes(self) -> list[str]:
        return [r.json["code"] for r in self.received]


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(Received(dict(self.headers.items()), body))
                status = state.script.pop(0) if state.script else 200
            if state.delay_s:
                time.sleep(state.delay_s)
            payload = b'{"accepted": true}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (the time-out tests): nobody to answer

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server
