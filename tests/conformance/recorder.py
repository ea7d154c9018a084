"""A recording upstream on a real socket: keeps every byte the proxy sent, parses it with h11.

The proxy's promise is that an upstream can never read a request differently than the proxy
did. So this upstream does not use a forgiving server: it stores the raw bytes of each
connection and reads them with h11, a strict RFC 9112 parser, answering each request it
parsed. A test then asserts that every connection parsed cleanly into exactly the requests
the proxy meant to send, and nothing else.

For response-side probes it can also answer with scripted raw bytes (`script`), so a test
can make the upstream lie about framing in ways no HTTP library would.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import h11


@dataclass
class Received:
    """One request as h11 read it off the wire."""

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclass
class Conn:
    """One upstream connection: its raw bytes, what h11 made of them, and any parse error."""

    raw: bytearray = field(default_factory=bytearray)
    requests: list[Received] = field(default_factory=list)
    error: str | None = None
    done: bool = False  # the connection is closed
    partial: bool = False  # bytes of a request arrived, its end has not (yet)
    sock: socket.socket | None = None


@dataclass
class Script:
    """A raw reply for the next request; `close` ends the connection after sending it."""

    reply: bytes
    close: bool = True
    early: bool = False  # answer as soon as the head arrived, without reading the body
    reset: bool = False  # end the connection with a TCP reset (RST), not a FIN


class Recorder:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.scripts: deque[Script] = deque()
        self.lock = threading.Lock()
        self.port = 0

    # -- what tests look at --------------------------------------------------------------------

    def requests(self) -> list[Received]:
        with self.lock:
            return [r for c in self.conns for r in c.requests]

    def errors(self) -> list[str]:
        with self.lock:
            return [c.error for c in self.conns if c.error]

    def settled(self) -> bool:
        """No open connection is in the middle of a request or has bytes not read yet (a
        connection the proxy closed is readable until its end is read)."""
        with self.lock:
            live = [c for c in self.conns if not c.done]
        for c in live:
            if c.partial:
                return False
            try:
                readable, _, _ = select.select([c.sock], [], [], 0)
            except (OSError, ValueError):  # closed meanwhile: done
                continue
            if readable:
                return False
        return True

    def clear(self) -> None:
        """Forget what was recorded; pooled connections stay open and keep recording. A
        connection left in the middle of a request is forgotten too: the proxy never sends
        another request on it, and its end (the proxy cutting it, maybe only now) is the
        last test's business."""
        with self.lock:
            for c in self.conns:
                c.raw.clear()
                c.requests.clear()
                c.error = None
            self.conns[:] = [c for c in self.conns if not c.done and not c.partial]
            self.scripts.clear()

    def script(
        self, reply: bytes, close: bool = True, early: bool = False, reset: bool = False
    ) -> None:
        """Answer the next request with `reply` (raw bytes) instead of the JSON echo."""
        with self.lock:
            self.scripts.append(Script(reply, close, early, reset))

    def assert_clean(self) -> list[Received]:
        """Every byte the proxy sent upstream parsed as whole, well-formed requests."""
        with self.lock:
            for i, c in enumerate(self.conns):
                assert c.error is None, f"upstream connection {i}: {c.error}; raw={bytes(c.raw)!r}"
            return [r for c in self.conns for r in c.requests]

    # -- the server ----------------------------------------------------------------------------

    def _next_script(self, early: bool = False) -> Script | None:
        with self.lock:
            if self.scripts and self.scripts[0].early == early:
                return self.scripts.popleft()
            return None

    def _serve_conn(self, sock: socket.socket) -> None:
        conn = Conn(sock=sock)
        with self.lock:
            self.conns.append(conn)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        sock.settimeout(10)
        current: Received | None = None
        body = bytearray()
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    with self.lock:
                        conn.raw += data
                        conn.partial = conn.partial or bool(data)
                    if not data:
                        if h.their_state not in (h11.IDLE, h11.DONE, h11.MUST_CLOSE):
                            conn.error = f"connection closed mid-request ({h.their_state})"
                        return
                    h.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    current = Received(
                        event.method.decode(),
                        event.target.decode("latin-1"),
                        event.http_version.decode(),
                        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
                        b"",
                    )
                    body = bytearray()
                    early = self._next_script(early=True)
                    if early is not None:
                        with self.lock:
                            conn.requests.append(current)
                        sock.sendall(early.reply)
                        sock.shutdown(socket.SHUT_WR)
                        _drain(sock)
                        return
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert current is not None
                    current.body = bytes(body)
                    with self.lock:
                        conn.requests.append(current)
                        conn.partial = False
                    script = self._next_script()
                    if script is not None:
                        sock.sendall(script.reply)
                        if script.reset:
                            linger = struct.pack("ii", 1, 0)  # on, 0 s: close sends RST
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                            return
                        if script.close:
                            sock.shutdown(socket.SHUT_WR)
                            _drain(sock)
                            return
                        # h11 cannot follow a hand-written reply; start a fresh reader.
                        h = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
                        continue
                    self._answer(h, sock, current)
                    if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as exc:
            conn.error = f"h11: {exc}"
        except OSError:
            pass
        finally:
            conn.done = True
            sock.close()

    def _answer(self, h: h11.Connection, sock: socket.socket, req: Received) -> None:
        payload = json.dumps(
            {
                "method": req.method,
                "target": req.target,
                "headers": req.headers,
                "body_len": len(req.body),
                "server": "recorder",
            }
        ).encode()
        out = h.send(
            h11.Response(
                status_code=200,
                headers=[
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(payload))),
                ],
            )
        )
        out += h.send(h11.Data(data=payload)) if req.method != "HEAD" else b""
        out += h.send(h11.EndOfMessage())
        sock.sendall(out)


def _drain(sock: socket.socket) -> None:
    """Read until the peer closes, so closing never turns into a reset that eats our reply."""
    sock.settimeout(2)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


@contextmanager
def recorder() -> Iterator[Recorder]:
    """A `Recorder` listening on an ephemeral port in a thread; always stopped afterwards."""
    rec = Recorder()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.1)
    rec.port = srv.getsockname()[1]
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                sock, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=rec._serve_conn, args=(sock,), daemon=True)
            t.start()
            threads.append(t)

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield rec
    finally:
        stopping.set()
        srv.close()
        acceptor.join(5)
