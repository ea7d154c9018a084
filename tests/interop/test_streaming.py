"""Streams through the proxy: server-sent events arrive as produced, a client that goes
away releases the upstream, a slow reader gets every byte, WebSocket works end to end."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import aiohttp
import httpx
import pytest
import websockets

from tests.interop.conftest import BINARY, WS_LIMIT
from tests.support.procs import wait_until

# The event-stream tests use gated streams: the upstream writes each event after the first
# only once the client has received the one before and says so, straight to the upstream.
# An event the proxy held back (until the end, or until more bytes came) would never be
# received, and the client's read gives up after EVENT_WAIT s. (They used to measure each
# event's lag against 0.25 s, which a slow, loaded machine can pass.)
EVENT_WAIT = 20.0


def _gate() -> str:
    return uuid.uuid4().hex


def _release_ai(stack, key: str) -> None:
    url = f"http://127.0.0.1:{stack.ports['ai']}/ai/sse-next"
    httpx.post(url, params={"key": key}, timeout=5).raise_for_status()


async def _release_ai_async(session: aiohttp.ClientSession, stack, key: str) -> None:
    url = f"http://127.0.0.1:{stack.ports['ai']}/ai/sse-next"
    async with session.post(url, params={"key": key}) as resp:
        assert resp.status == 200, await resp.text()


async def _gated_events(session: aiohttp.ClientSession, stack, n: int = 6) -> list[int]:
    """The event numbers of one gated stream read through the proxy with aiohttp."""
    key = _gate()
    got: list[int] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=EVENT_WAIT)
    async with session.get(f"{stack.url}/ai/sse?n={n}&key={key}", timeout=timeout) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:])["i"])
                if len(got) < n:
                    await _release_ai_async(session, stack, key)
    return got


async def test_server_sent_events_arrive_as_they_are_produced(stack):
    async with aiohttp.ClientSession() as session:
        assert await _gated_events(session, stack) == list(range(6))


def test_httpx_streaming_reads_events_one_by_one(stack):
    key, seen = _gate(), []
    url = f"{stack.url}/ai/sse?n=6&key={key}"
    with httpx.stream("GET", url, timeout=EVENT_WAIT) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])["i"])
                if len(seen) < 6:
                    _release_ai(stack, key)
    assert seen == list(range(6)), seen


def _stats(stack) -> dict:
    return httpx.get(f"http://127.0.0.1:{stack.ports['ai']}/ai/stats", timeout=5).json()


def test_client_disconnect_mid_download_releases_the_upstream(stack):
    before = _stats(stack)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
            sock.sendall(b"GET /ai/endless HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            while got < 300_000:
                piece = sock.recv(65536)
                assert piece, "proxy closed an endless download"
                got += len(piece)
    wait_until(
        lambda: _stats(stack)["ended"] - before["ended"] == 3,
        timeout=5,
        what="the upstream to see all three downloads cancelled",
    )
    # and the proxy keeps serving
    assert httpx.get(stack.url + "/ai/echo", timeout=5).status_code == 200
    stack.alive()


def test_slow_reader_gets_every_byte(stack):
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.sendall(b"GET /ng/file.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        reads = 0
        while True:
            piece = sock.recv(16384)
            if not piece:
                break
            data += piece
            reads += 1
            if reads % 16 == 0:
                time.sleep(0.002)  # a reader slower than the proxy can write
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == BINARY


async def test_websocket_round_trip_with_the_websockets_library(stack):
    uri = stack.url.replace("http://", "ws://") + "/ai/ws"
    async with websockets.connect(uri, subprotocols=["chat.v1"], open_timeout=5) as ws:
        assert ws.subprotocol == "chat.v1"
        await ws.send("héllo")
        assert await ws.recv() == "echo:héllo"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x02\x01\x00"
        big = "x" * 200_000
        await ws.send(big)
        assert await ws.recv() == "echo:" + big
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
        await ws.send("close-4001")
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
    assert ws.close_code == 4001 and ws.close_reason == "asked to"
    stack.alive()


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_a_websocket_message_over_the_limit_closes_with_1009(stack, compression):
    """A message is relayed whole, so its size is bounded, after inflation: 4 MiB of zeros
    deflate to a few KB, and unbounded they would make the proxy allocate whatever a client
    asks (a decompression bomb). The close says 1009 and nothing reaches the upstream."""
    uri = stack.url.replace("http://", "ws://") + "/ai/ws"
    async with websockets.connect(uri, open_timeout=5, compression=compression) as ws:
        if compression:
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        await ws.send("x" * (WS_LIMIT - 100))  # just under: relayed
        assert len(await ws.recv()) == WS_LIMIT - 100 + len("echo:")
        with pytest.raises(websockets.ConnectionClosed):  # while sending, or after
            await ws.send(b"\x00" * (4 * WS_LIMIT))
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009, (ws.close_code, ws.close_reason)
    stack.alive()


async def test_sixty_concurrent_event_streams_all_flow(stack):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.gather(*(_gated_events(session, stack) for _ in range(60)))
    assert all(r == list(range(6)) for r in results), "events were held back under concurrency"


def test_event_stream_to_an_http10_client_is_flushed_as_produced(stack):
    key, seen = _gate(), []
    with socket.create_connection(("127.0.0.1", stack.port), timeout=EVENT_WAIT) as sock:
        sock.sendall(b"GET /ai/sse?n=6&key=%s HTTP/1.0\r\nHost: x\r\n\r\n" % key.encode())
        data = b""
        while piece := sock.recv(65536):
            data += piece
            for line in piece.split(b"\n"):
                if line.startswith(b"data: "):
                    seen.append(json.loads(line[6:])["i"])
                    if len(seen) < 6:
                        _release_ai(stack, key)
    assert data.startswith(b"HTTP/1.1 200")
    assert seen == list(range(6)), seen


def test_close_delimited_stream_from_an_http10_upstream_is_relayed_as_produced(stack):
    key, seen = _gate(), 0
    release = f"http://127.0.0.1:{stack.ports['h10']}/h10/next"
    with httpx.stream("GET", f"{stack.url}/h10/stream?key={key}", timeout=EVENT_WAIT) as resp:
        assert resp.headers.get("transfer-encoding") == "chunked"  # re-framed for HTTP/1.1
        for line in resp.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen < 6:
                    httpx.post(release, params={"key": key}, timeout=5).raise_for_status()
    assert seen == 6
