"""An upstream's `Keep-Alive: timeout=N` bounds how long the proxy keeps its connection idle.

Node.js closes idle connections after 5 s, gunicorn after 2 s, while `timeout.idle` is 30 s
by default: a request sent on a connection just as the upstream closes it fails (a POST is
not retried). Like undici, the proxy reuses such a connection only within N - 1 s.
"""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from proxy.client import keep_alive_limit
from tests.support.procs import PYTHON, free_port, running


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ("timeout=5", 4.0),
        ("timeout=5, max=1000", 4.0),
        ("max=3, Timeout = 2", 1.0),
        ('timeout="10"', 9.0),
        ("timeout=1", 0.0),
        ("timeout=0", 0.0),
        ("max=5", None),
        ("timeout=soon", None),
        ("timeout=-3", None),
        ("timeout=" + "9" * 5000, None),
        ("timeout=\u00b2", None),  # a digit to isdigit(), not to int()
        ("timeout=\u0665", None),  # an Arabic-Indic 5: int() reads it, HTTP does not
        ("", None),
    ],
)
def test_keep_alive_limit_reads_the_timeout_parameter(value, limit):
    assert keep_alive_limit(value) == limit


class Upstream:
    """Answers every request on a kept-alive connection with `Keep-Alive: <hint>`; counts
    the connections the proxy opened."""

    def __init__(self, hint: str) -> None:
        self.hint = hint.encode()
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
                    b"Keep-Alive: " + self.hint + b"\r\n\r\nok"
                )

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        self.sock.close()
        self.accepter.join(5)
        assert not self.accepter.is_alive()


HINTS = {
    "one-second": "timeout=1",
    "thirty-seconds": "timeout=30, max=100",
    "none": "max=100",
    "not-a-number": "timeout=\u00b2",  # sent as UTF-8; read as no timeout given
}


def test_an_upstream_keep_alive_timeout_bounds_reuse(tmp_path):
    """Three requests in a row to each upstream: one that keeps idle connections for 1 s
    gets a new connection every time (N - 1 = 0), the others keep one connection."""
    ups = {name: Upstream(hint) for name, hint in HINTS.items()}
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        "version: 1\n"
        f"listen: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
        "upstreams:\n"
        + "".join(
            f"  {name}: {{url: 'http://127.0.0.1:{up.port}', retry: {{retries: 0}}}}\n"
            for name, up in ups.items()
        )
        + "default: none\nroutes:\n"
        + "".join(
            f"  - {{name: {name}, match: {{path: /{name}}}, target: {name}, mode: extracted}}\n"
            for name in ups
        )
    )
    try:
        with (
            running(
                [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
                ready_url=f"http://127.0.0.1:{admin}/-/ready",
            ),
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            for name in ups:
                for _ in range(3):
                    resp = client.get(f"/{name}")
                    assert (resp.status_code, resp.text) == (200, "ok")
                    assert "keep-alive" not in resp.headers  # hop-by-hop: not passed on
    finally:
        for up in ups.values():
            up.close()
    assert {name: up.connections for name, up in ups.items()} == {
        "one-second": 3,
        "thirty-seconds": 1,
        "none": 1,
        "not-a-number": 1,
    }
