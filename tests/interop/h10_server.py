"""An HTTP/1.0 upstream (Python's http.server): no keep-alive, close-delimited bodies.

Run as `python -m tests.interop.h10_server PORT`.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BODY = b"".join(b"line %05d of a close-delimited body\n" % i for i in range(2000))
GATES: dict[str, threading.Semaphore] = {}  # a gated stream's key -> its next event's gate


def _key(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("key", [""])[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _answer(self, with_body: bool) -> None:
        if self.path.startswith("/ready"):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Seen-Path", self.path)
        self.end_headers()  # no Content-Length: the body ends when the connection closes
        if with_body:
            self.wfile.write(BODY)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/h10/stream"):
            self._stream()
            return
        self._answer(True)

    def _stream(self) -> None:
        """Server-sent events, close-delimited: each event flushed, 100 ms apart; or, with
        `?key=`, each after the first only once the test says it saw the one before (`POST
        /h10/next?key=`), so "relayed as produced" does not depend on the machine's speed."""
        key = _key(self.path)
        gate = GATES[key] = threading.Semaphore(0) if key else None
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(6):
                if gate is not None and i and not gate.acquire(timeout=60):
                    return  # never told: the connection closes, the body cut short
                self.wfile.write(b"data: %.6f\n\n" % time.time())
                self.wfile.flush()
                if gate is None:
                    time.sleep(0.1)
        finally:
            GATES.pop(key, None)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.startswith("/h10/next"):
            gate = GATES.get(_key(self.path))
            self.send_response(200 if gate is not None else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if gate is not None:
                gate.release()
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"got %d bytes" % len(data))

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
