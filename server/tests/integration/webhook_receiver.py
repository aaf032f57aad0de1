"""A real HTTP endpoint on 127.0.0.1 for outgoing-webhook tests (standard library only: http.server).

It records every request (headers and the exact body bytes) and answers with a status the test chooses,
so a test can take it "down" (answer 5xx, or not listen at all) and bring it back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..support import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers.get("x-spooled-event", "")

    def signature_valid(self, secret: str) -> bool:
        """What a receiver does: recompute sha256=HMAC(secret, "<timestamp>.<raw body>") and compare."""
        timestamp = self.headers.get("x-spooled-timestamp", "")
        given = self.headers.get("x-spooled-signature", "")
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        return fresh and hmac.compare_digest(given, "sha256=" + mac)


class Receiver:
    """`with Receiver() as r:` listens on a free port (or the given one) until the block ends."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.status
                reply = b'{"received": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if event is None or r.event == event]

    def wait_for(self, count: int, event: str | None = None, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(event)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                got = [r.event for r in self.received()]
                raise AssertionError(f"expected {count} x {event or 'any'} deliveries, got {got}")
            time.sleep(0.05)
