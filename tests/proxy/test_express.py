"""The fast lane's express path (ProxyHandler.serve_express): no task per plain request.

A plain request's first attempt is written at once and a small, complete answer is relayed
from the upstream connection's read callback; anything else goes on as a task. These tests
watch the lane counters on `/-/ready` to know which way a request went, and check what the
express path must get right besides the happy case: an answer whose body comes in pieces,
a client that leaves while the upstream thinks, and a shutdown with such a request pending.
(The byte-for-byte agreement of the lanes is tests/proxy/test_fast_lane.py's job.)
"""

from __future__ import annotations

import signal
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, wait_until
from tests.support.rawhttp import read_head
from tests.support.single import single_upstream_proxy


@dataclass
class Upstream:
    """A keep-alive upstream whose answers the test releases (`/split`, `/hold`)."""

    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)  # a /hold request is in
    hung_up: threading.Event = field(default_factory=threading.Event)  # ...and was dropped
    seen: list[bytes] = field(default_factory=list)  # request lines, as they came


def _handler(up: Upstream) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn = self.request
            conn.settimeout(20)
            buf = b""
            served = 0  # answers on this connection so far
            while True:
                got = read_head(conn, buf)
                if got is None:
                    return
                head, buf = got
                up.seen.append(head.split(b"\r\n")[0])
                path = head.split(b" ")[1]
                served += 1
                if path == b"/drop-second" and served > 1:
                    return  # a kept-alive connection closed on a request, nothing answered
                if path == b"/reset-second" and served > 1:
                    # As uvicorn does when it closes an idle connection (its keep-alive
                    # timeout, `--limit-max-requests`) with a request just arrived: the
                    # unread request makes the close a reset, with nothing answered.
                    # (Closed here: socketserver would shut the sending side down first, a
                    # FIN before the reset.)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    return
                if path in (b"/small", b"/drop-second", b"/reset-second"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif path == b"/split":  # the head now, the body when the test says
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
                    up.release.wait(10)
                    conn.sendall(b"llo")
                elif path == b"/trickle":  # a head a byte at a time, never finished
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 200:
                            if up.release.wait(0.02):
                                return
                            conn.sendall(bytes([byte]))
                    except OSError:  # the proxy gave up and closed: as it should
                        up.hung_up.set()
                    return
                elif path == b"/hold":  # no answer until released; notice a hang-up
                    up.held.set()
                    try:
                        if conn.recv(1) == b"":
                            up.hung_up.set()
                            return
                    except TimeoutError:
                        return
                else:
                    up.release.wait(10)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")

    return Handler


@contextmanager
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(up))
    server.daemon_threads = True
    up.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        up.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Proxy:
    url: str
    admin: str
    proc: object

    def lanes(self) -> dict[str, int]:
        return httpx.get(self.admin + "/-/ready").json()["lanes"]

    def in_flight(self) -> int:
        return httpx.get(self.admin + "/-/ready").json()["in_flight"]


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as u:
        yield u


@pytest.fixture
def proxy(tmp_path, up: Upstream) -> Iterator[Proxy]:
    with single_upstream_proxy(tmp_path, up.port) as (port, admin, proc):
        yield Proxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", proc)


def fetch_in_background(client: httpx.Client, url: str) -> tuple[threading.Thread, dict]:
    """GET `url` on a thread; the dict gets `answer`: (status, text)."""
    result: dict[str, object] = {}

    def fetch() -> None:
        r = client.get(url, timeout=10)
        result["answer"] = (r.status_code, r.text)

    thread = threading.Thread(target=fetch)
    thread.start()
    return thread, result


def refused(proxy: Proxy) -> bool:
    try:
        socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), 1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_plain_requests_on_a_warm_pool_take_the_express_path(proxy):
    with httpx.Client() as client:
        answers = [client.get(proxy.url + "/small") for _ in range(20)]
    assert [(r.status_code, r.text) for r in answers] == [(200, "ok")] * 20
    lanes = proxy.lanes()
    assert lanes["fast_requests"] == 20
    # Only the first found no idle upstream connection and went on as a task.
    assert lanes["escalated_requests"] == 1


def test_an_answer_whose_body_is_still_arriving_goes_on_as_a_task(proxy, up):
    with httpx.Client() as client:
        assert client.get(proxy.url + "/small").text == "ok"  # warms the pool
        before = proxy.lanes()["escalated_requests"]
        t, result = fetch_in_background(client, proxy.url + "/split")
        wait_until(lambda: proxy.lanes()["escalated_requests"] > before, what="escalation")
        up.release.set()
        t.join(10)
    assert result["answer"] == (200, "hello")


def test_a_client_that_leaves_while_the_upstream_thinks_releases_everything(proxy, up):
    with httpx.Client() as client:
        assert client.get(proxy.url + "/small").text == "ok"
    escalated = proxy.lanes()["escalated_requests"]
    sock = socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])))
    sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    assert up.held.wait(10)
    assert proxy.in_flight() == 1
    sock.close()
    # The proxy drops the upstream connection (its answer has nobody to go to) and counts
    # the request as finished; it never went on as a task.
    assert up.hung_up.wait(10)
    wait_until(lambda: proxy.in_flight() == 0, what="the request to finish")
    assert proxy.lanes()["escalated_requests"] == escalated
    assert httpx.get(proxy.url + "/small").text == "ok"


def test_sigterm_waits_for_an_express_request_in_flight(proxy, up):
    with httpx.Client() as client:
        assert client.get(proxy.url + "/small").text == "ok"
        escalated = proxy.lanes()["escalated_requests"]
        t, result = fetch_in_background(client, proxy.url + "/slow")
        wait_until(lambda: proxy.in_flight() == 1, what="request in flight")
        assert proxy.lanes()["escalated_requests"] == escalated  # it is on the express path
        proxy.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(proxy), what="the listener to close")
        up.release.set()  # the request in flight still gets its answer
        t.join(10)
        assert proxy.proc.wait(15) == 0
    assert result["answer"] == (200, "slow")


def test_the_in_process_profile_runs_on_the_express_path():
    """bench/express_profile.py (a developer's tool) asserts its requests stay express."""
    out = subprocess.run(
        [PYTHON, "bench/express_profile.py", "--requests", "300"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert "µs per request" in out.stdout


@pytest.mark.parametrize("path", ["/drop-second", "/reset-second"], ids=["closed", "reset"])
def test_a_kept_alive_connection_ended_under_a_request_retries_only_what_is_safe(proxy, up, path):
    """The upstream ends a reused connection without answering: the express path hands
    over to the pool's rule (as a task would meet it): a GET goes again on a fresh
    connection, a POST (which the upstream may have acted on) gets a 502 and is never
    sent twice. The same when it resets the connection (a close with the request unread,
    as uvicorn's is) rather than closing it: aiohttp reports the reset as its own
    `ClientOSError`, and it is the same stale connection (the proxy here has `retries: 0`,
    so no retry policy hides it; it was a 502 "sent an invalid response: [Errno 104]
    Connection reset by peer")."""
    with httpx.Client() as client:
        assert client.get(proxy.url + "/small").text == "ok"  # one pooled connection
        r = client.get(proxy.url + path)
        assert (r.status_code, r.text) == (200, "ok")
        assert up.seen[-2:] == [f"GET {path} HTTP/1.1".encode()] * 2
        assert client.get(proxy.url + "/small").text == "ok"  # the fresh one is pooled now
        r = client.post(proxy.url + path)
        assert r.status_code == 502
        assert "closed a kept-alive connection" in r.json()["message"]
    assert up.seen.count(f"POST {path} HTTP/1.1".encode()) == 1
    if path == "/drop-second":
        assert proxy.lanes()["escalated_requests"] >= 2  # both went on as tasks


def test_the_total_timeout_ends_an_answer_that_never_finishes_on_a_reused_connection(tmp_path, up):
    """Bytes keep coming (so the read timeout never fires) but the answer never completes:
    the total timeout answers 504, on a connection an earlier request used (whose deadline
    was on the same per-connection timer), and the connection is dropped. (Total 1 s, not
    0.4 s: the quick first exchange must never be cut by it on a slow, loaded machine.)"""
    with (
        single_upstream_proxy(tmp_path, up.port, timeout="{read: 5.0, total: 1.0}") as (
            port,
            _,
            _,
        ),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        assert client.get("/small").text == "ok"  # the connection is pooled
        r = client.get("/trickle")
        assert r.status_code == 504, r.text
        assert r.elapsed.total_seconds() >= 1.0
        assert r.json()["error"] == "gateway_timeout"
        wait_until(up.hung_up.is_set, timeout=5)  # the trickling connection was closed
        assert client.get("/small").text == "ok"  # and the proxy carries on
