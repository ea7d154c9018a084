"""Clients that go away early, and HTTP/1.0 keep-alive where the length is unknown: the
proxy must let the upstream know, keep serving, and never leave a client waiting."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import websockets

from tests.support.procs import wait_until


def _stats(stack) -> dict:
    return httpx.get(f"http://127.0.0.1:{stack.ports['ai']}/ai/stats", timeout=5).json()


def test_client_leaving_before_the_answer_cancels_the_upstream_request(stack):
    before = _stats(stack)
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(b"GET /ai/hang HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(
            lambda: _stats(stack)["hang_started"] > before["hang_started"],
            timeout=5,
            what="the request to reach the upstream",
        )
    wait_until(
        lambda: _stats(stack)["hang_cancelled"] > before["hang_cancelled"],
        timeout=5,
        what="the upstream to see the caller go away",
    )
    stack.alive()


def test_client_leaving_mid_upload_never_completes_the_upstream_request(stack):
    before = _stats(stack)
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(
            b"POST /ai/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
            + b"u" * 200_000
        )
        wait_until(
            lambda: _stats(stack)["upload_started"] > before["upload_started"],
            timeout=5,
            what="the upload to reach the upstream",
        )
    wait_until(
        lambda: _stats(stack)["upload_aborted"] > before["upload_aborted"],
        timeout=5,
        what="the upstream to see the upload cut",
    )
    assert httpx.post(stack.url + "/ai/upload", content=b"x" * 1000, timeout=5).json() == {
        "size": 1000
    }


def test_client_leaving_an_event_stream_releases_the_upstream(stack):
    before = _stats(stack)
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(b"GET /ai/endless HTTP/1.0\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)
    wait_until(
        lambda: _stats(stack)["ended"] > before["ended"],
        timeout=5,
        what="the upstream to see an HTTP/1.0 client go away",
    )


def _read_until_close(sock: socket.socket, limit: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            break
        if not piece:
            return data
        data += piece
    raise AssertionError(f"connection not closed after an unknown-length body: {data[:300]!r}")


def test_http10_keep_alive_with_an_unknown_length_ends_by_closing(stack):
    for path in (b"/gt/chunked", b"/h10/x", b"/ai/sse?n=2&every=0.05"):
        with socket.create_connection(("127.0.0.1", stack.port), timeout=2) as sock:
            sock.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n" % path)
            data = _read_until_close(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        lower = head.lower()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding" not in lower and b"keep-alive" not in lower, (path, head)
        assert body, path


async def test_websocket_client_close_code_and_reason_reach_the_upstream(stack):
    uri = stack.url.replace("http://", "ws://") + "/ai/ws-record"
    for i in range(10):  # the close races two relays inside the proxy: repeat it
        before = len(_stats(stack)["ws_closes"])
        async with websockets.connect(uri, open_timeout=5) as ws:
            await ws.close(code=4100 + i, reason=f"bye now {i}")
        wait_until(
            lambda before=before: len(_stats(stack)["ws_closes"]) > before,
            timeout=5,
            what="the upstream close",
        )
        assert _stats(stack)["ws_closes"][-1] == [4100 + i, f"bye now {i}"]
        # the client got its close answered with its own code
        assert ws.close_code == 4100 + i


async def test_upstream_vanishing_mid_websocket_is_reported_as_a_server_error(stack):
    uri = stack.url.replace("http://", "ws://") + "/ai/ws"
    async with websockets.connect(uri, open_timeout=5, close_timeout=5) as ws:
        await ws.send("drop")
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
    # 1011 (internal error), a code a server may send; never a reserved 1006 on the wire
    assert ws.close_code == 1011, (ws.close_code, ws.close_reason)
    stack.alive()


async def test_a_refused_websocket_upgrade_shows_the_upstreams_answer(stack):
    base = stack.url.replace("http://", "ws://")
    for path, status in (("/ai/ws-auth", 401), ("/ai/no-such-socket", 404), ("/gt/echo", 502)):
        try:
            async with websockets.connect(base + path, open_timeout=5):
                raise AssertionError(f"{path} was switched")
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code == status, path
            if status == 401:
                assert exc.response.headers["WWW-Authenticate"] == 'Bearer realm="ws"'
                assert exc.response.headers["Set-Cookie"] == "seen=1; Path=/"
                # the upstream's own words, not the proxy's JSON
                assert exc.response.body == b"log in first"
                assert exc.response.headers["Content-Type"].startswith("text/plain")
    stack.alive()


def test_a_redirected_websocket_upgrade_is_relayed_never_followed(stack):
    """Following it would let an open redirect in the upstream point the proxy at any host,
    with the client's headers. (A raw socket: WebSocket client libraries follow redirects.)"""
    handshake = (
        b"GET /ai/ws-redirect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(handshake)
        answer = b""
        while b"moved" not in answer:
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert answer.startswith(b"HTTP/1.1 302"), answer[:200]
    assert b"location: http://" in head and b"/ai/ws-followed" in head
    assert _stats(stack)["ws_followed"] == 0
    stack.alive()


def test_a_sync_gunicorn_worker_is_freed_when_the_client_leaves_its_stream(stack):
    # gunicorn's sync worker serves one request at a time: if the proxy kept draining the
    # abandoned 30 s stream, the next request would wait for it (about 25 s more).
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(b"GET /gs/slowstream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < 300_000:
            piece = sock.recv(65536)
            assert piece
            got += len(piece)
    t0 = time.monotonic()
    assert httpx.get(stack.url + "/gs/echo", timeout=10).status_code == 200
    assert time.monotonic() - t0 < 3, "the worker stayed busy with the abandoned stream"


def test_a_websocket_client_vanishing_is_going_away_for_the_upstream(stack):
    import base64
    import os
    import struct

    for linger in (False, True):  # a FIN, then a reset
        before = len(_stats(stack)["ws_closes"])
        sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /ai/ws-record HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % key
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        if linger:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        wait_until(
            lambda before=before: len(_stats(stack)["ws_closes"]) > before,
            timeout=5,
            what="the upstream WebSocket to be closed",
        )
        assert _stats(stack)["ws_closes"][-1] == [1001, ""]


def _access_lines(stack, request_ids: set[str]) -> list[dict]:
    lines = [json.loads(t) for t in stack.log.read_text().splitlines() if t.startswith("{")]
    return [line for line in lines if line.get("request_id") in request_ids]


def test_an_upstream_dying_mid_answer_is_a_502_in_the_log_not_an_internal_error(stack):
    """The head went out, then the upstream died: the client's connection is cut (no final
    chunk), and the access line and metrics say 502, the upstream's failure. It was logged
    as an 'internal proxy error' with a traceback and counted as a 500, on both lanes."""
    ids = set()
    for method, body in (("GET", None), ("POST", b"p" * 100_000)):  # fast lane, aiohttp lane
        with (
            httpx.Client(timeout=10) as client,
            client.stream(method, stack.url + "/ai/dies", content=body) as resp,
        ):
            assert resp.status_code == 200
            ids.add(resp.headers["X-Request-ID"])
            try:
                data = resp.read()
            except httpx.RemoteProtocolError:
                pass  # the truncation is visible to the client
            else:
                raise AssertionError(f"a cut answer looked complete ({len(data)} bytes)")

    def finished() -> list[dict]:
        lines = _access_lines(stack, ids)
        return lines if sum(line.get("msg") == "request" for line in lines) == 2 else []

    lines = wait_until(finished, timeout=5, what="both access lines")
    assert [line["status"] for line in lines if line["msg"] == "request"] == [502, 502], lines
    assert not [line for line in lines if line["msg"] == "internal proxy error"], lines
    stack.alive()


def test_an_answer_cut_mid_body_logs_the_bytes_that_went_out(stack):
    """`bytes_out` in the access line counts the body bytes handed to the client, also when
    the answer is cut: the upstream dying mid-body (it said 0 though 120 kB had reached the
    client), on both lanes."""
    received: dict[str, int] = {}
    for method, body in (("GET", None), ("POST", b"p" * 100_000)):  # fast lane, aiohttp lane
        with (
            httpx.Client(timeout=10) as client,
            client.stream(method, stack.url + "/ai/dies", content=body) as resp,
        ):
            rid = resp.headers["X-Request-ID"]
            got = 0
            try:
                for piece in resp.iter_bytes():
                    got += len(piece)
            except httpx.RemoteProtocolError:
                pass
            received[rid] = got

    def finished() -> list[dict]:
        lines = [x for x in _access_lines(stack, set(received)) if x["msg"] == "request"]
        return lines if len(lines) == 2 else []

    for line in wait_until(finished, timeout=5, what="both access lines"):
        assert line["status"] == 502, line
        # what the client read went out, and no more than the upstream sent
        assert 0 < received[line["request_id"]] <= line["bytes_out"] <= 120_007, line


def test_a_client_leaving_mid_download_is_logged_with_the_bytes_that_went_out(stack):
    """A client that leaves an endless download after its first bytes: the access line's
    `bytes_out` says what was handed to it (it said 0), on both lanes (a body of 70 kB
    sends the request to the aiohttp lane)."""
    requests = {
        "leaves-fast-lane": b"GET /ai/endless HTTP/1.0\r\nHost: x\r\nX-Request-ID: %s\r\n\r\n",
        "leaves-aiohttp-lane": b"GET /ai/endless HTTP/1.0\r\nHost: x\r\nX-Request-ID: %s\r\n"
        b"Content-Length: 70000\r\n\r\n" + b"g" * 70000,
    }
    received: dict[str, int] = {}
    for rid, request in requests.items():
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
            sock.sendall(request.replace(b"%s", rid.encode()))
            data = b""
            while b"\r\n\r\n" not in data or data.endswith(b"\r\n\r\n"):
                piece = sock.recv(65536)
                assert piece, data
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            received[rid] = len(body)

    def finished() -> list[dict]:
        lines = [x for x in _access_lines(stack, set(requests)) if x["msg"] == "request"]
        return lines if len(lines) == 2 else []

    for line in wait_until(finished, timeout=10, what="both access lines"):
        assert 0 < received[line["request_id"]] <= line["bytes_out"], (received, line)
    stack.alive()
