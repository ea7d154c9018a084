"""WebSocket sessions through a real proxy process: how they end, and what is logged."""

from __future__ import annotations

import asyncio
import base64
import json
import os
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
