"""Streamed request bodies (the aiohttp lane) against the clocks: the total timeout counts
from the end of the request, as Envoy's route timeout does, so a slow but steady upload is
not cut; a client that stalls mid-body gets 408 after `limits.idle_timeout`; and neither a
stalled nor a malformed body counts against the upstream's breaker."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conformance.wire import Wire
from tests.proxy.conftest import Upstreams, base_config
from tests.support.procs import PYTHON, ROOT, free_port, running, wait_until

PIECE = b"u" * (32 * 1024)
PIECES = 8  # 256 KiB: more than the fast lane reads whole, so it streams
# The clients' idle timeout in the `stalling` tests. Pauses the tests mean to survive stay
# well under it, and those meant to be cut well over it: with 0.5 s, a 0.35 s pause left a
# slow, loaded machine 0.15 s to spare.
IDLE = 2.0


@contextmanager
def proxy(
    tmp_path: Path, ups: Upstreams, svc_timeout: str, extra: str
) -> Iterator[tuple[int, int]]:
    """A proxy sending `/svc/upload` to the `svc` upstream's `/upload`, `svc` with
    `svc_timeout` and a breaker that opens after two failures, and `extra` top-level
    settings; yields its port and admin port."""
    port, admin = free_port(), free_port()
    route = "- {name: svc, match: {path: /svc/upload}, target: svc, mode: extracted, rewrite: /upload}\n"
    config = base_config(ups, port, admin, route, extra)
    config = config.replace(
        "timeout: {connect: 1.0, read: 2.0, total: 5.0}",
        f"timeout: {svc_timeout}\n    retry: {{retries: 0}}\n    breaker: {{consecutive_failures: 2}}",
    )
    path = tmp_path / "routes.yaml"
    path.write_text(config)
    with (
        (tmp_path / "proxy.log").open("w") as log,
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(path)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            stdout=log,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        ),
    ):
        yield port, admin


def head(size: int) -> bytes:
    return b"POST /svc/upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size


def test_an_upload_that_takes_longer_than_the_total_timeout_is_not_cut(tmp_path, upstreams):
    """Total 2 s: the upstream's answer after the body's end must fit in it on a slow,
    loaded machine (0.5 s could be hit, an unintended 504); read 30 s, so only the total
    timeout can cut the 3.2 s upload."""
    with proxy(tmp_path, upstreams, "{connect: 1.0, read: 30, total: 2.0}", "") as (port, _):
        started = time.monotonic()
        with Wire(port, timeout=20) as w:
            w.send(head(len(PIECE) * PIECES))
            for _ in range(PIECES):  # a slow client: 3.2 s for the body, past the total
                w.send(PIECE)
                time.sleep(3.2 / PIECES)
            resp = w.response("POST")
        assert time.monotonic() - started > 2.0
    assert resp.status == 200, resp.body
    expected = hashlib.sha256(PIECE * PIECES).hexdigest()
    assert resp.body.count(expected.encode()) == 1


@pytest.fixture
def stalling(tmp_path, upstreams) -> Iterator[tuple[int, int]]:
    """Clients may pause their bodies for `IDLE` s."""
    timeout = "{connect: 1.0, read: 5.0, total: 5.0}"
    with proxy(tmp_path, upstreams, timeout, f"limits: {{idle_timeout: {IDLE}}}\n") as ports:
        yield ports


def test_a_client_that_stalls_mid_body_gets_408(stalling):
    port, _ = stalling
    with Wire(port, timeout=10) as w:
        w.send(head(len(PIECE) * PIECES) + PIECE * 3)
        resp = w.response("POST")  # no more bytes: the proxy gives up after IDLE s
        assert resp.status == 408, resp.body
        assert b"limits.idle_timeout" in resp.body
        # The proxy then reads what more comes for a while (aiohttp's lingering close, so
        # a client still sending gets the answer rather than a reset), then closes.
        assert resp.header("connection") == ["close"]
    assert httpx.get(f"http://127.0.0.1:{port}/after").status_code == 200


SMALL = b"s" * 8192  # read whole by the fast lane before the request runs


def test_a_small_body_sent_slowly_is_not_cut_while_bytes_keep_coming(stalling):
    """The fast lane's clock is between reads of a body, not for the whole of it: a body
    sent over 2.4 s, a piece every 0.3 s, passes a 2 s idle timeout."""
    port, _ = stalling
    with Wire(port, timeout=10) as w:
        w.send(head(len(SMALL)))
        for i in range(8):
            time.sleep(0.3)  # the scenario: a slow client's pace
            w.send(SMALL[i * 1024 : (i + 1) * 1024])
        resp = w.response("POST")
    assert resp.status == 200, resp.body
    assert hashlib.sha256(SMALL).hexdigest().encode() in resp.body


def test_keep_alive_idle_time_does_not_count_against_the_next_request(stalling):
    """A connection idle for most of the timeout, then a request whose small body takes
    most of it again: the idle wait ends with the request's first byte."""
    port, _ = stalling
    with Wire(port, timeout=10) as w:
        assert w.send(head(2) + b"ok").response("POST").status == 200
        time.sleep(0.6 * IDLE)  # idle keep-alive, under the timeout
        w.send(head(len(SMALL)) + SMALL[:4096])
        time.sleep(0.6 * IDLE)  # the body's second half comes late, within IDLE of a read
        w.send(SMALL[4096:])
        resp = w.response("POST")
    assert resp.status == 200, resp.body


def test_a_small_body_that_stalls_gets_408_naming_the_route(stalling, tmp_path):
    port, admin = stalling
    with Wire(port, timeout=10) as w:
        w.send(head(len(SMALL)).replace(b"upload ", b"upload?key=s3cret ") + SMALL[:100])
        resp = w.response("POST")
    assert resp.status == 408, resp.body
    assert resp.header("connection") == ["close"]
    body = json.loads(resp.body)
    assert body["route"] == "svc" and "limits.idle_timeout" in body["message"], body
    metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics").text
    counted = 'method="POST",mode="extracted",route="svc",side="proxy",status_class="4xx"} 1.0'
    assert counted in metrics, metrics
    # Its access line can be found by the request id the client got, with the path
    # (and the query, redacted).
    rid = resp.header("x-request-id")[0]

    def access_line() -> dict | None:
        for line in (tmp_path / "proxy.log").read_text().splitlines():
            if f'"request_id":"{rid}"' in line:
                return json.loads(line)
        return None

    line = wait_until(access_line, what="the 408's access line")
    assert line["status"] == 408 and line["route"] == "svc" and line["path"] == "/svc/upload"
    assert "s3cret" not in json.dumps(line) and line["duration_ms"] >= IDLE * 1000, line


def test_bad_client_bodies_do_not_open_the_upstream_breaker(stalling):
    """Four clients whose bodies stall or break their framing mid-stream, against a breaker
    that opens after two failures: the upstream is still called."""
    port, admin = stalling
    bad_chunk = b"POST /svc/upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    bad_chunk += b"%x\r\n" % (2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024) + b"\r\nzz\r\n"
    stalled = head(10**6) + PIECE
    for request, status in [(bad_chunk, 400), (stalled, 408)] * 2:
        with Wire(port, timeout=10) as w:
            assert w.send(request).response("POST").status == status
    svc = httpx.get(f"http://127.0.0.1:{admin}/-/upstreams").json()["svc"]
    assert svc["breaker"]["state"] == "closed", svc
    r = httpx.post(f"http://127.0.0.1:{port}/svc/upload", content=b"ok")
    assert r.status_code == 200 and r.json()["size"] == 2


def test_an_upstream_that_stops_reading_the_body_times_out_after_the_read_timeout(tmp_path):
    """The upload is stuck on the upstream's side (it reads the head, then nothing): 504
    after `timeout.read`, not after `total` (which only starts once the body is sent)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        held.append(conn)  # read nothing: the proxy's writes back up

    threading.Thread(target=accept, daemon=True).start()
    ups = Upstreams("", f"http://127.0.0.1:{listener.getsockname()[1]}", 0, 0)
    ups_legacy = Upstreams(ups.svc, ups.svc, 0, 0)
    try:
        with proxy(tmp_path, ups_legacy, "{connect: 1.0, read: 0.5, total: 30}", "") as (port, _):
            body = b"z" * (64 * 1024 * 1024)
            with Wire(port, timeout=10) as w:
                sender = threading.Thread(target=w.send, args=(head(len(body)) + body,))
                sender.start()
                started = time.monotonic()
                resp = w.response("POST")
                assert resp.status == 504, resp.body
                assert 0.5 <= time.monotonic() - started < 5  # the read timeout, not total
                w.sock.shutdown(socket.SHUT_RDWR)  # unblock the sender
                sender.join(10)
    finally:
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def answers_then_stops_reading(*replies: bytes) -> Iterator[str]:
    """An upstream that answers right after the request head, then neither reads the body
    nor closes (until the test ends): its answer is the response, not a 504 later."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and (piece := conn.recv(4096)):
                head += piece
            for i, reply in enumerate(replies):
                if i:
                    time.sleep(0.2)  # the scenario: an interim answer, then the final one later
                conn.sendall(reply)
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stopping.set()
        t.join(5)
        for conn in held:
            conn.close()
        srv.close()


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"


@pytest.mark.parametrize(
    ("framing", "interim"),
    [([], []), (["-H", "Transfer-Encoding: chunked"], []), ([], [EARLY_HINTS])],
)
def test_an_answer_before_the_body_is_taken_is_relayed_at_once(tmp_path, framing, interim):
    """RFC 9112 §9.6: a client sending a body watches for a response meanwhile. A 403 sent
    before the upstream reads any of an 8 MiB upload (after a 103, or not) reaches the
    client, not a 504 after the read timeout (nginx relays it too)."""
    reply = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden"
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (8 << 20))
    with answers_then_stops_reading(*interim, reply) as url:
        port_of = int(url.rsplit(":", 1)[1])
        ups = Upstreams(legacy=url, svc=url, legacy_port=port_of, svc_port=port_of)
        with proxy(tmp_path, ups, "{connect: 1.0, read: 5.0, total: 60}", "") as (port, _):
            out = subprocess.run(
                ["/usr/bin/curl", "-sS", "-w", " %{http_code}", "--max-time", "30", "-H", "Expect:",
                 *framing, "--data-binary", f"@{big}", f"http://127.0.0.1:{port}/svc/upload"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
    assert out.stdout == "forbidden 403", (out.stdout, out.stderr)
