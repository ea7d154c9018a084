"""The open files limit: a proxy started under a low soft limit raises it to the hard one,
and says so when even that is low."""

from __future__ import annotations

import resource
import socket
import subprocess

from tests.proxy.conftest import base_config
from tests.support.procs import PYTHON, ROOT, free_port, stop, wait_http


def _start(tmp_path, upstreams, soft: int, hard: int):
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(base_config(upstreams, port, admin))
    log = tmp_path / "proxy.log"

    # prlimit (util-linux) sets the limits and execs the proxy: same process, no
    # preexec_fn (unsafe in a test process with threads).
    proc = subprocess.Popen(
        [
            "prlimit",
            f"--nofile={soft}:{hard}",
            PYTHON,
            "-m",
            "proxy.cli",
            "serve",
            "-c",
            str(config),
        ],
        cwd=str(ROOT),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{admin}/-/ready", proc=proc)
    except BaseException:
        stop(proc)
        raise
    return proc, port, log


def _limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_a_low_soft_limit_is_raised_and_every_client_is_served(tmp_path, upstreams):
    """Under a soft limit of 256, about the 200th client connection was accepted and closed
    at once by the event loop (libuv's answer to EMFILE), unanswered and unlogged."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    proc, port, _ = _start(tmp_path, upstreams, 256, min(hard, 4096))
    clients: list[socket.socket] = []
    try:
        assert _limits(proc.pid) == (min(hard, 4096),) * 2
        for _ in range(300):  # all open at once, each with its request sent
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            clients.append(sock)
            sock.sendall(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        firsts = [sock.recv(12) for sock in clients]
        assert firsts == [b"HTTP/1.1 200"] * 300
    finally:
        for sock in clients:
            sock.close()
        stop(proc)


def test_a_low_hard_limit_is_said_at_startup(tmp_path, upstreams):
    proc, _, log = _start(tmp_path, upstreams, 512, 512)
    try:
        assert _limits(proc.pid) == (512, 512)
    finally:
        stop(proc)
    text = log.read_text()
    assert "open files limit is 512: about 206 clients at once" in text, text
    assert "ulimit -Hn" in text
