"""Upstreams that answer before reading the request body, then close with it unread:
gunicorn for an app that never reads the body, http.server for a chunked body it does not
understand. The upstream's answer must reach the client (never a 502 because writing the
rest of the body failed)."""

from __future__ import annotations

import asyncio
import collections
import socket
import subprocess
from pathlib import Path

import pytest
from aiohttp import ClientPayloadError

from proxy.client import _UpstreamProtocol

# path -> status with a Content-Length body, with a chunked body. nginx refuses a declared
# length over 1 MiB with 413, a chunked POST to a static file with 405 (reading the rest).
EXPECTED = {
    "/gs/cookies": ("200", "200"),
    "/gt/nothing": ("404", "404"),
    "/h10/x": ("200", "200"),
    "/ng/text.txt": ("413", "405"),
}


def test_early_answers_reach_the_client(stack, tmp_path: Path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"q" * 6_000_000)
    got: dict[tuple[str, str], collections.Counter] = {}
    for path in EXPECTED:
        for framing in ([], ["-H", "Transfer-Encoding: chunked"]):
            counts = collections.Counter()
            for _ in range(8):
                out = subprocess.run(
                    ["/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *framing,
                     "--data-binary", f"@{big}", stack.url + path],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                counts[out.stdout] += 1
            got[(path, " ".join(framing))] = counts
    bad = {k: v for k, v in got.items() if set(v) != {EXPECTED[k[0]][bool(k[1])]}}
    assert not bad, f"{bad}\n{stack.log_tail()}"
    stack.alive()


def _reset_with(sent: bytes, *, head_read: bytes = b"", exc: BaseException | None = None):
    """A protocol whose connection the loop gave up on after a failed write, with `sent`
    still queued unread in the socket (and `head_read` parsed before the failure)."""
    ours, theirs = socket.socketpair()
    proto = _UpstreamProtocol(asyncio.get_running_loop())
    proto.expect_response("POST", 5.0)
    proto.keep_spare(ours)
    if head_read:
        proto.data_received(head_read)
    theirs.sendall(sent)
    theirs.close()
    proto.connection_lost(exc or BrokenPipeError(32, "Broken pipe"))
    assert ours.fileno() == -1, "the spare descriptor outlived the connection"
    return proto


async def test_an_answer_left_unread_in_a_reset_socket_is_recovered():
    proto = _reset_with(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
    message, payload = await proto.read()
    assert message.code == 413 and await payload.read() == b"big!"


async def test_the_rest_of_a_body_left_unread_in_a_reset_socket_is_recovered():
    # gunicorn writes the head and the body apart: the head may be parsed before the write
    # fails, with the body still queued in the socket.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    for exc in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
        proto = _reset_with(b"ok", head_read=head, exc=exc)
        message, payload = await proto.read()
        assert message.code == 200 and await payload.read() == b"ok"


async def test_nothing_is_invented_when_no_whole_answer_was_sent():
    with pytest.raises(OSError, match="Broken pipe"):
        await _reset_with(b"").read()
    # a cut body stays cut
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    message, payload = await _reset_with(b"12345", head_read=head).read()
    with pytest.raises(ClientPayloadError):
        await payload.read()
    # a timeout (not a reset) never reads what is queued
    timed_out = _reset_with(b"HTTP/1.1 200 OK\r\n\r\npartial", exc=TimeoutError("total"))
    with pytest.raises(OSError, match="total"):
        await timed_out.read()
