"""A log collector that stops reading stdout must not stop the proxy."""

from __future__ import annotations

import json
import os
import threading

import httpx

from tests.proxy.conftest import base_config
from tests.support.procs import PYTHON, free_port, running, wait_until


def test_a_stdout_nobody_reads_does_not_stop_the_proxy(tmp_path, upstreams):
    """A pipe takes about 64 KiB; the access lines of a few hundred requests fill it. The
    lines were written from the event loop, so the next write blocked it: the proxy
    stopped answering until its logs were read. Now 2,000 requests are served with
    nobody reading, and every line arrives once the reader is back."""
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(base_config(upstreams, port, admin))
    r, w = os.pipe()
    got = bytearray()
    try:
        with running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            stdout=w,
        ):
            with httpx.Client(timeout=10) as client:
                statuses = [
                    client.get(f"http://127.0.0.1:{port}/x").status_code for _ in range(2000)
                ]
            assert statuses == [200] * 2000

            reader = threading.Thread(target=lambda: _read_until_eof(r, got), daemon=True)
            reader.start()  # the collector is back

            def served() -> int:
                lines = [x for x in bytes(got).splitlines() if b'"strangler.access"' in x]
                return len(lines) >= 2000 and len(lines)

            assert wait_until(served, what="2,000 access lines") == 2000
            os.close(w)  # the proxy holds the only write end left
            w = -1
        reader.join(10)
    finally:
        if w >= 0:
            os.close(w)
    messages = [json.loads(x)["msg"] for x in bytes(got).splitlines() if x.startswith(b"{")]
    assert messages[-1] == "stopped"  # the last line, written as the process left
    assert not [m for m in messages if "log lines were dropped" in m]


def _read_until_eof(fd: int, into: bytearray) -> None:
    try:
        while chunk := os.read(fd, 1 << 16):
            into += chunk
    finally:
        os.close(fd)
