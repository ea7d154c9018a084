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

from aiohttp.client_proto import ResponseHandler

from proxy.client import _rescue_early_answer

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


async def test_an_answer_left_unread_in_a_reset_socket_is_recovered():
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
        proto = ResponseHandler(loop)
        proto.connection_lost(BrokenPipeError(32, "Broken pipe"))  # the loop gave up on it
        rescued = await _rescue_early_answer(proto, ours, "POST", 5.0)
        assert rescued is not proto
        message, payload = await rescued.read()
        assert message.code == 413 and await payload.read() == b"big!"
    finally:
        ours.close()
        theirs.close()


async def test_nothing_is_invented_when_no_answer_was_sent():
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        proto = ResponseHandler(loop)
        proto.connection_lost(BrokenPipeError(32, "Broken pipe"))
        assert await _rescue_early_answer(proto, ours, "POST", 5.0) is proto
        # a timeout (not a reset) never rescues, even with bytes waiting
        theirs.sendall(b"HTTP/1.1 200 OK\r\n\r\npartial")
        timed_out = ResponseHandler(loop)
        timed_out.connection_lost(TimeoutError("total timeout"))
        assert await _rescue_early_answer(timed_out, ours, "GET", 5.0) is timed_out
    finally:
        ours.close()
        theirs.close()
