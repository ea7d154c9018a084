"""Lingering close: an answer is not lost when the proxy closes a connection the client is
still writing to (docs/proxy.md, "Lingering close"; proxy/linger.py).

A socket closed with bytes unread in its receive buffer, or that receives bytes after it
was closed, answers with a TCP RST: the proxy's kernel then drops what it has not sent of
the answer yet, and the client's read ends in ECONNRESET instead of the end of the answer.
Each probe writes a request the proxy answers as the connection's last (trailer fields,
a refusal, `Connection: close`) and keeps writing behind it; it waits (polling the
kernel's table of TCP sockets, never sleeping) until the proxy has ended its side of the
connection, writes some more, and only then reads: it must get the whole answer and a
clean end of stream, not a reset.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import h11
import httpx
import pytest

from tests.conformance.conftest import Edge
from tests.support.procs import wait_until

# Linux only, as the proxy's deployments are: the probes read TCP states from /proc/net/tcp.

GET = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"
PIPELINE = GET * (1024 * 1024 // len(GET))  # about 1 MiB of pipelined requests
MORE = GET * 2000  # written once the proxy has ended its side (still sending)
ESTABLISHED, TCP_CLOSE = 1, 7  # tcp_states.h


def proxy_side_state(proxy_port: int, client_port: int) -> int | None:
    """The TCP state of the proxy's socket for this connection (None once it is gone)."""
    want = (f"0100007F:{proxy_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return int(fields[3], 16)
    return None


def lanes(e: Edge) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{e.admin_port}/-/ready", timeout=5).json()["lanes"]


@dataclass
class Outcome:
    data: bytes  # everything the client read
    error: OSError | None  # how reading ended, when not with a clean end of stream
    write_error: OSError | None  # a write the proxy refused (EPIPE / ECONNRESET)


@contextmanager
def client(e: Edge, rcvbuf: int | None = None) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a client that reads slowly: the answer waits in the proxy's kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", e.port))
    try:
        yield sock
    finally:
        sock.close()


def written(sock: socket.socket) -> bool:
    """Whether the client's writes have left: acknowledged by the proxy's kernel (its send
    queue, SIOCOUTQ, is empty), or dropped by a reset (its TCP state is CLOSE)."""
    if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE:
        return True
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0]) == 0


def still_writing(
    e: Edge,
    first: bytes,
    behind: bytes,
    rcvbuf: int | None = None,
    opening: Callable[[socket.socket], bytes] | None = None,
) -> Outcome:
    """Write `first` and `behind` in one go; wait until the proxy ended its side; write
    `MORE` and wait until it left the client's send queue (taken in, or dropped by a
    reset); write `MORE` again (a client still sending its request); then read everything
    (see the module docstring). `opening`: what the client does first (it returns what it
    read)."""
    with client(e, rcvbuf) as sock:
        opened = opening(sock) if opening is not None else b""
        write_errors: list[OSError] = []

        def write(data: bytes) -> None:
            try:
                sock.sendall(data)
            except OSError as exc:  # the proxy reset the connection
                write_errors.append(exc)

        # From a thread: a proxy that stops reading must not block the probe.
        writer = threading.Thread(target=write, args=(first + behind,), daemon=True)
        writer.start()
        client_port = sock.getsockname()[1]
        wait_until(
            lambda: proxy_side_state(e.port, client_port) != ESTABLISHED,
            timeout=20,
            what="the proxy to end its side of the connection",
        )
        writer.join(20)
        assert not writer.is_alive(), "the proxy neither read nor closed"
        for _ in range(2):
            if not write_errors:
                write(MORE)
                wait_until(lambda: written(sock), what="the client's writes to leave")
        data, error = opened, None
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError as exc:  # ECONNRESET: the proxy's reset reached the client
                error = exc
                break
            if not chunk:
                break
            data += chunk
        return Outcome(data, error, write_errors[0] if write_errors else None)


def answer(data: bytes, method: str = "GET") -> tuple[h11.Response, bytes, bool]:
    """The first response in `data`, its body, and whether it was complete."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "probe")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    head, body = None, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:  # the stream ended inside the answer
            assert head is not None, f"no response at all: {data[:300]!r}"
            return head, body, False
        if isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, body, True
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            assert head is not None, f"no response at all: {data[:300]!r}"
            return head, body, False


def settled(e: Edge) -> None:
    """Every lingering close ends once its client has closed: nothing stays open."""
    assert "lingering_connections" in lanes(e)
    wait_until(lambda: lanes(e)["lingering_connections"] == 0, what="lingering closes to end")


def test_connection_close_with_requests_pipelined_behind_it(e: Edge) -> None:
    """The fast lane answers `Connection: close` and parses nothing after it (RFC 9112
    §9.6); the client, still pipelining, gets the answer and the end of the stream."""
    before = lanes(e).get("lingering_closes", 0)
    first = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = still_writing(e, first, PIPELINE)
    assert out.error is None and out.write_error is None, out
    head, body, complete = answer(out.data)
    assert head.status_code == 200 and complete
    assert b'"target": "/a"' in body
    assert out.data.count(b"HTTP/1.1 ") == 1  # nothing behind `Connection: close` answered
    assert lanes(e)["lingering_closes"] > before
    settled(e)


def test_trailer_fields_with_requests_pipelined_behind_them(e: Edge) -> None:
    """The review's fuzz case: a chunked body ending with trailer fields ends the
    connection (docs/proxy.md, "Trailer fields end the connection"), the client keeps
    pipelining GETs, and its answer must not be lost to a reset."""
    first = (
        b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    )
    out = still_writing(e, first, PIPELINE)
    assert out.error is None and out.write_error is None, out
    head, body, complete = answer(out.data, "POST")
    assert head.status_code == 200 and complete
    assert (b"connection", b"close") in head.headers
    assert b'"body_len": 3' in body
    assert [r.target for r in e.legacy.assert_clean()] == ["/t"]
    settled(e)


LINES = b"garbage\r\n" * (512 * 1024 // 9)
CHUNKED_POST = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK = b"4000\r\n" + b"B" * 0x4000 + b"\r\n"  # 16 KiB of data, well framed
BODY = b"A" * (512 * 1024)  # what the client still sends of a broken body
ONE_LINE = b"garbage " * (512 * 1024 // 8)  # a line over `limits.max_request_line`


@pytest.mark.parametrize(
    ("first", "behind", "status"),
    [
        pytest.param(b"GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", LINES, 400, id="400"),
        pytest.param(
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", LINES, 414, id="414"
        ),
        pytest.param(
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            ONE_LINE,
            431,
            id="431",
        ),
        pytest.param(  # chunk extensions over 16 KiB: the body is refused mid-way
            CHUNKED_POST + b"5;ext=", b"A" * (512 * 1024), 400, id="chunk-extensions"
        ),
        # A body that breaks its framing while the client still sends it.
        pytest.param(CHUNKED_POST + b"5\r\nhello\r\nzz\r\n", BODY, 400, id="chunk-size"),
        pytest.param(CHUNKED_POST + b"5\r\nhelloXX", BODY, 400, id="chunk-overrun"),
    ],
)
def test_garbage_after_a_refused_request(e: Edge, first: bytes, behind: bytes, status: int) -> None:
    """A refusal of the parser closes the connection; the client, still writing, reads the
    refusal to its end, and nothing after it. (The status is the refused head's own: the
    aiohttp lane judged 414 against 431 by the line it parsed last, the garbage behind the
    head.)"""
    out = still_writing(e, first, behind)
    assert out.error is None and out.write_error is None, out
    head, _, complete = answer(out.data, first.split(b" ", 1)[0].decode())
    assert head.status_code == status and complete
    assert out.data.count(b"HTTP/1.1 ") == 1, out.data[:600]
    assert e.legacy.assert_clean() == []
    settled(e)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", id="fast"),
        pytest.param(
            b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            id="trailers",
        ),
    ],
)
def test_an_answer_the_client_reads_slowly_is_not_cut(e: Edge, first: bytes) -> None:
    """The loss itself: a client with a small receive buffer has not taken the whole
    answer in when the proxy closes, and a reset makes the proxy's kernel drop the rest.
    With a lingering close the answer arrives whole."""
    payload = b"z" * 12_000
    e.legacy.script(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
        % (len(payload), payload),
        close=False,
    )
    out = still_writing(e, first, PIPELINE, rcvbuf=4096)
    head, body, complete = answer(out.data, first.split(b" ", 1)[0].decode())
    assert head.status_code == 200
    assert complete and body == payload, f"{len(body)} of {len(payload)} bytes: {out.error!r}"
    assert out.error is None and out.write_error is None, (out.error, out.write_error)
    settled(e)


def test_no_lingering_when_the_client_asked_for_the_close_and_sent_nothing_more(
    e: Edge,
) -> None:
    """`Connection: close` with nothing behind it: the client expects the close, and the
    connection is closed at once (as nginx does), on both lanes."""
    before = lanes(e).get("lingering_closes", 0)
    requests = [
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # fast lane
        b"POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n",  # aiohttp lane
        b"GET /c HTTP/1.0\r\nHost: x\r\n\r\n",
    ]
    for request in requests:
        with client(e) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
    after = lanes(e)
    assert after["lingering_closes"] == before
    assert after["lingering_connections"] == 0


def test_a_lingering_close_ends_when_the_client_closes(e: Edge) -> None:
    """The client reads the answer and closes: the lingering connection is closed too."""
    with client(e) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n" + GET * 10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 ")
        # The proxy half-closed and lingers, reading what the client still sends.
        assert lanes(e)["lingering_connections"] >= 1
        sock.sendall(GET)
    settled(e)


def _sent_until_answered(sock: socket.socket) -> bytes:
    """A chunked POST whose well-framed chunks go on until an answer comes (the proxy
    buffers a chunked body's first MiB before it goes upstream, and relays the upstream's
    early answer once its writes there stall); returns what was read of it."""
    sock.sendall(CHUNKED_POST)
    for _ in range(4096):  # 64 MiB at most
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sock.recv(65536)
        sock.sendall(CHUNK)
    raise AssertionError("no answer while the body was being sent")


def _answered_unread(sock: socket.socket) -> bytes:
    """`OPTIONS *` with a chunked body: the proxy answers it, reading none of the body."""
    sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    sock.sendall(CHUNK)
    got = b""
    while b"\r\n\r\n" not in got:  # the whole head (the answer has no body)
        piece = sock.recv(65536)
        assert piece, f"closed after {got!r}"
        got += piece
    return got


@pytest.mark.parametrize(
    ("opening", "method", "status"),
    [
        pytest.param(_sent_until_answered, "POST", 413, id="upstream-early-413"),
        pytest.param(_answered_unread, "OPTIONS", 200, id="answered-unread"),
    ],
)
def test_a_body_that_breaks_after_its_answer_gets_no_second_answer(
    e: Edge, opening: Callable[[socket.socket], bytes], method: str, status: int
) -> None:
    """The request is answered while its chunked body still comes (an upstream's early
    413, relayed; an answer of the proxy's own, which reads no body), the proxy reads the
    rest of the body to drop it, and the body breaks its framing. The answer given was the
    request's answer: no 400 follows it (aiohttp queued one), and the client, still
    sending, reads it and a clean end, not a reset."""
    if status == 413:
        e.legacy.script(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", early=True)
    out = still_writing(e, b"zz\r\n", BODY, opening=opening)
    assert out.error is None and out.write_error is None, out
    head, _, complete = answer(out.data, method)
    assert head.status_code == status and complete
    assert out.data.count(b"HTTP/1.1 ") == 1, out.data[:600]  # and no 400 after it
    settled(e)
