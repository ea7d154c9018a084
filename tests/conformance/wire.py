"""A raw-socket client whose *reading* side is strict: responses are parsed with h11.

Probes must send bytes no library would, but the proxy's answers must be well-formed HTTP,
so they are read by a strict parser. Reading stops as soon as the expected responses are
complete (no fixed sleeps); `closed()` tells whether the proxy then closed the connection.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h11


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    informational: list[int] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


class ProtocolViolation(AssertionError):
    """The proxy's bytes are not valid HTTP/1.1 (h11 says why)."""


class Wire:
    """One client connection to the proxy."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.raw = b""  # everything received, for messages

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> Wire:
        """Send bytes; a peer that already gave up on us (reset, broken pipe) counts as EOF."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.eof = True
        return self

    def _recv(self, deadline: float) -> bool:
        """Read more bytes; False on EOF or when the deadline passed."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.raw += data
        return True

    def response(self, method: str = "GET", timeout: float | None = None) -> Response:
        """The next complete response (after any 1xx), parsed strictly."""
        deadline = time.monotonic() + (timeout or self.timeout)
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "probe")]))
        conn.send(h11.EndOfMessage())
        if self.buf:
            conn.receive_data(self.buf)  # (an empty call would mean EOF to h11)
        informational: list[int] = []
        status = 0
        headers: list[tuple[str, str]] = []
        body = b""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolViolation(
                    f"invalid response from the proxy: {exc}; raw={self.raw!r}"
                ) from exc
            if event is h11.NEED_DATA:
                before = len(self.buf)
                if not self._recv(deadline):
                    if self.eof:
                        conn.receive_data(b"")
                        continue
                    raise ProtocolViolation(
                        f"no complete response within the deadline; got {self.raw[:600]!r}"
                    )
                conn.receive_data(self.buf[before:])
                continue
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k.decode(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ProtocolViolation(f"connection closed before a response; raw={self.raw!r}")
        trailing, closed = conn.trailing_data
        self.buf = trailing
        return Response(status, headers, body, informational)

    def wait_for(self, marker: bytes, timeout: float | None = None) -> bool:
        """Read until `marker` has arrived (True) or the deadline passed (False)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buf:
            if not self._recv(deadline):
                return False
        return True

    def closed(self, timeout: float = 10.0) -> bool:
        """True when the proxy closes the connection within `timeout` (unread bytes stay
        in `buf`). Asserting a close, the wait costs nothing when the proxy does close: the
        timeout is only how long a slow machine gets to do it."""
        deadline = time.monotonic() + timeout
        while self._recv(deadline):
            pass
        return self.eof

    def more(self, timeout: float = 10.0) -> bool:
        """Wait for the proxy's next bytes (True) or its close without any (False): for a
        step where it may do either. Neither within `timeout` is a `ProtocolViolation`."""
        deadline = time.monotonic() + timeout
        while not self.buf:
            if not self._recv(deadline):
                if self.eof:
                    return False
                raise ProtocolViolation(
                    f"neither more bytes nor a close within {timeout}s; got {self.raw[:600]!r}"
                )
        return True

    def silent(self) -> bytes:
        """Whatever arrives before the connection closes (or goes quiet for a moment)."""
        self.closed(timeout=1.0)
        return self.buf
