"""WebSocket sessions through a real proxy process: how they end, and what is logged."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess

import aiohttp
import httpx

from tests.support.procs import PYTHON, ROOT, free_port, running, wait_until

LOGGED = "telemetry: {traces: {exporter: none}, log_format: json}\n"


def access_lines(log) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "strangler.access"]


def test_a_websocket_session_is_logged_as_101_however_it_ends(start_proxy):
    """The 101 is the answer. aiohttp cancels a handler once its client connection closes,
    which the end of every session does; the access line and the metrics said 499 (client
    closed request) for every session, even one closed cleanly with 1000."""
    p = start_proxy(extra=LOGGED)

    async def sessions() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(p.url + "/ws") as ws:  # the client closes, 1000
                await ws.send_str("hi")
                assert (await ws.receive()).data == "echo:hi"
            async with s.ws_connect(p.url + "/ws") as ws:  # the upstream closes, 4001
                await ws.send_str("close:4001")
                assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE

    asyncio.run(sessions())

    def both() -> list[dict] | None:
        found = [x for x in access_lines(p.log) if x["path"] == "/ws"]
        return found if len(found) == 2 else None

    lines = wait_until(both, what="both sessions' access lines")
    assert [x["status"] for x in lines] == [101, 101]


def _closes(upstream: str) -> list[int]:
    return httpx.get(upstream + "/ws-closes").json()


def _raw_session(port: int, frame: bytes) -> bytes:
    """Upgrade on a raw socket, send one frame, and read until the proxy closes."""
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /ws-record HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % key
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(1)
        assert data.startswith(b"HTTP/1.1 101"), data
        sock.sendall(frame)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return rest


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def test_the_code_a_client_was_closed_with_reaches_the_upstream(start_proxy, upstreams):
    """A client the proxy closes for what it sent (1009, a message over
    `limits.websocket_message`; 1007, invalid UTF-8) ends the upstream's session with that
    code. The proxy's close of the client side ends the client connection at once, and the
    cancelled handler cut the upstream with 1001 (or 1011) before the code was passed on."""
    p = start_proxy(extra="limits: {websocket_message: 1024}\n")
    svc = upstreams.legacy

    async def oversized() -> int | None:
        async with aiohttp.ClientSession() as s, s.ws_connect(p.url + "/ws-record") as ws:
            await ws.send_str("fits")
            assert (await ws.receive()).data == "fits"
            await ws.send_bytes(b"x" * 4096)
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE
            return msg.data

    before = len(_closes(svc))
    assert asyncio.run(oversized()) == 1009
    closes = wait_until(lambda: (c := _closes(svc))[before:] and c, what="the upstream's close")
    assert closes[before:] == [1009]

    before = len(closes)
    answer = _raw_session(p.port, _masked_text(b"\xff\xfe"))
    assert answer.startswith(b"\x88\x02\x03\xef")  # Close, 1007
    closes = wait_until(lambda: (c := _closes(svc))[before:] and c, what="the upstream's close")
    assert closes[before:] == [1007]


def test_an_upstream_that_never_answers_the_upgrade_is_a_504_within_its_timeouts(tmp_path):
    """The upstream's `timeout` bounds the handshake as it bounds any request: aiohttp's
    own default had the client wait five minutes for an upstream that accepted the
    connection and never answered."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the TCP handshake; nothing ever answers
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
        "upstreams:\n"
        f'  legacy: {{url: "http://127.0.0.1:{silent.getsockname()[1]}",'
        " timeout: {connect: 0.5, read: 1.0, total: 2.0}}\n"
        "default: legacy\nroutes: []\n"
    )
    try:
        with (
            (tmp_path / "proxy.log").open("w") as log,
            running(
                [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
                ready_url=f"http://127.0.0.1:{admin}/-/ready",
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            ),
        ):
            # Without a bound the handshake waits aiohttp's 300 s: the client's 15 s
            # timeout would raise instead of this 504.
            answer = httpx.get(
                f"http://127.0.0.1:{port}/socket",
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                },
                timeout=15.0,
            )
    finally:
        silent.close()
    assert answer.status_code == 504, answer.text


def _upgraded(port: int, path: str) -> socket.socket:
    """A raw socket past its 101: the test decides what it reads and answers."""
    key = base64.b64encode(os.urandom(16))
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key)
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the proxy closed the connection"
        data += chunk
    return data


def _frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next (unmasked, unfragmented) frame from the proxy."""
    first, second = _exactly(sock, 2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(_exactly(sock, 2), "big")
    elif size == 127:
        size = int.from_bytes(_exactly(sock, 8), "big")
    return first & 0x0F, _exactly(sock, size)


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def test_a_client_that_vanished_is_found_by_the_heartbeat_and_the_upstream_told(
    start_proxy, upstreams
):
    """A client gone without a FIN (a laptop closed, a NAT that forgot the flow) held its
    session, and the upstream's, for ever. Now it is pinged once silent for
    `limits.websocket_heartbeat` seconds, and with no pong the upstream gets 1001."""
    p = start_proxy(extra="limits: {websocket_heartbeat: 0.3}\n")
    svc = upstreams.legacy
    before = len(_closes(svc))
    sock = _upgraded(p.port, "/ws-record")  # and then nothing: no read, no pong
    try:
        closes = wait_until(lambda: (c := _closes(svc))[before:] and c, what="the upstream's close")
        assert closes[before:] == [1001]
    finally:
        sock.close()


def test_a_quiet_client_that_answers_pings_keeps_its_session(start_proxy):
    # A heartbeat of 1 s leaves the test half a second to answer each ping, even on a
    # loaded machine (the test itself is the peer that must answer in time).
    p = start_proxy(extra="limits: {websocket_heartbeat: 1.0}\n")
    with _upgraded(p.port, "/ws") as sock:
        pings = 0
        while pings < 3:  # three heartbeats' worth of silence from the client
            opcode, payload = _frame(sock)
            if opcode == 0xA:  # the upstream's pong to the proxy's ping, passed on
                continue
            assert opcode == 0x9, (opcode, payload)
            sock.sendall(_masked(0xA, payload))
            pings += 1
        sock.sendall(_masked(0x1, b"still here"))
        while (frame := _frame(sock))[0] in (0x9, 0xA):
            if frame[0] == 0x9:
                sock.sendall(_masked(0xA, frame[1]))
        assert frame == (0x1, b"echo:still here")


def test_an_upstream_that_vanished_is_found_by_the_heartbeat_and_the_client_told(tmp_path):
    """The upstream side the same way: a stopped upstream process (SIGSTOP: its kernel
    still holds the connection, nothing answers) ends the client's session with 1011."""
    up, port, admin = free_port(), free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
        f'upstreams:\n  legacy: {{url: "http://127.0.0.1:{up}"}}\n'
        "default: legacy\nroutes: []\nlimits: {websocket_heartbeat: 1.0}\n"
    )

    async def session(upstream: subprocess.Popen) -> tuple[aiohttp.WSMsgType, int | None]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await ws.send_str("hi")
            assert (await ws.receive(timeout=10)).data == "echo:hi"
            upstream.send_signal(signal.SIGSTOP)
            try:
                msg = await ws.receive(timeout=20)  # answers the proxy's pings meanwhile
            finally:
                upstream.send_signal(signal.SIGCONT)
            return msg.type, msg.data

    with (
        running(
            [PYTHON, "-m", "tests.support.upstream", str(up), "legacy"],
            ready_url=f"http://127.0.0.1:{up}/ready",
        ) as upstream,
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
        ),
    ):
        assert asyncio.run(session(upstream)) == (aiohttp.WSMsgType.CLOSE, 1011)
