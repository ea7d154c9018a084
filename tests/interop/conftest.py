"""One proxy in front of real third-party upstreams, shared by every interop test.

Upstreams (each a real process on an ephemeral port), reached through the proxy by prefix:

| prefix | upstream                                                        |
|--------|-----------------------------------------------------------------|
| /gs    | gunicorn, sync worker (closes after every response)             |
| /gt    | gunicorn, gthread worker, keep-alive 1 s (idle closes)          |
| /gm    | gunicorn, gthread worker, max_requests 3 (worker restarts)      |
| /ng    | nginx: static files, gzip (chunked), ranges, ETag; keepalive_requests 2 |
| /ai    | aiohttp: SSE, WebSocket, endless download, br/gzip bodies       |
| /h10   | Python http.server speaking HTTP/1.0, close-delimited bodies    |
| (else) | the Django monolith (`tests/support/world.py start_legacy`)     |
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.procs import PYTHON, ROOT, free_port, running, wait_http
from tests.support.world import start_legacy

TEXT = b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % i for i in range(4000))
BINARY = bytes((i * 7919 + 13) % 251 for i in range(300_000))
WS_LIMIT = 1024 * 1024  # the proxy's `limits.websocket_message` here


@dataclass
class Stack:
    url: str
    port: int
    admin: str
    log: Path
    proc: subprocess.Popen
    ports: dict[str, int] = field(default_factory=dict)
    www: Path | None = None

    def alive(self) -> None:
        assert self.proc.poll() is None, "proxy died:\n" + self.log.read_text()[-3000:]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def nginx_conf(base: Path, port: int) -> str:
    return textwrap.dedent(
        f"""\
        user root;
        worker_processes 1;
        daemon off;
        pid {base}/nginx.pid;
        error_log {base}/error.log warn;
        events {{ worker_connections 256; }}
        http {{
          access_log off;
          client_body_temp_path {base}/t_body;
          proxy_temp_path {base}/t_proxy;
          fastcgi_temp_path {base}/t_fcgi;
          uwsgi_temp_path {base}/t_uwsgi;
          scgi_temp_path {base}/t_scgi;
          types {{ text/plain txt; application/octet-stream bin; text/html html; }}
          keepalive_requests 2;
          keepalive_timeout 30s;
          server {{
            listen 127.0.0.1:{port};
            root {base}/www;
            gzip on;
            gzip_types text/plain;
            gzip_min_length 0;
            gzip_proxied any;
            location = /ready {{ return 200 "ok"; }}
          }}
        }}
        """
    )


def gunicorn(port: int, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "gunicorn", "tests.interop.wsgi_app:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--no-control-socket",
        "--graceful-timeout", "2", *extra,
    ]  # fmt: skip


def proxy_yaml(port: int, admin: int, ports: dict[str, int], legacy: str) -> str:
    ups = "\n".join(f'  {n}: {{url: "http://127.0.0.1:{p}"}}' for n, p in ports.items())
    routes = "\n".join(
        f"  - {{name: r-{n}, match: {{prefix: /{n}}}, mode: extracted, target: {n}}}" for n in ports
    )
    return (
        f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
        f'upstreams:\n  legacy: {{url: "{legacy}"}}\n{ups}\n'
        f"default: legacy\nroutes:\n{routes}\n"
        "telemetry: {traces: {exporter: none}, metrics: true, log_format: json}\n"
        f"limits: {{websocket_message: {WS_LIMIT}}}\n"
    )


def start_listening(stack_: ExitStack, make_args, ready_path: str, port: int, **kw) -> int:
    """Start a server on `port`; if it dies before it is ready (another process took the
    port between `free_port()` and its bind, as parallel test runs do), try a fresh port."""
    for attempt in range(3):
        try:
            stack_.enter_context(
                running(make_args(port), ready_url=f"http://127.0.0.1:{port}{ready_path}", **kw)
            )
            return port
        except RuntimeError:
            if attempt == 2:
                raise
            port = free_port()
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("interop")
    www = base / "www" / "ng"
    www.mkdir(parents=True)
    (www / "text.txt").write_bytes(TEXT)
    (www / "file.bin").write_bytes(BINARY)
    ports = {name: free_port() for name in ("gs", "gt", "gm", "ng", "ai", "h10")}
    with ExitStack() as stack_:
        legacy = stack_.enter_context(start_legacy(base))

        def nginx(port: int) -> list[str]:
            (base / "nginx.conf").write_text(nginx_conf(base, port))
            return ["/usr/sbin/nginx", "-p", str(base), "-c", str(base / "nginx.conf"),
                    "-e", str(base / "error.log")]  # fmt: skip

        ports["ng"] = start_listening(stack_, nginx, "/ready", ports["ng"])
        for name, extra in (
            ("gs", ("--worker-class", "sync")),
            ("gt", ("--worker-class", "gthread", "--threads", "4", "--keep-alive", "1")),
            ("gm", ("--worker-class", "gthread", "--threads", "2", "--max-requests", "3")),
        ):
            ports[name] = start_listening(
                stack_, lambda p, extra=extra: gunicorn(p, *extra), "/", ports[name]
            )
        ports["ai"] = start_listening(
            stack_, lambda p: [PYTHON, "-m", "tests.interop.aio_app", str(p)], "/ai/ready",
            ports["ai"],
        )  # fmt: skip
        ports["h10"] = start_listening(
            stack_, lambda p: [PYTHON, "-m", "tests.interop.h10_server", str(p)], "/ready",
            ports["h10"],
        )  # fmt: skip
        port, admin = free_port(), free_port()
        config = base / "routes.yaml"
        config.write_text(proxy_yaml(port, admin, ports, legacy))
        log = base / "proxy.log"
        proc = stack_.enter_context(
            running(
                [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
                ready_url=f"http://127.0.0.1:{admin}/-/ready",
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc=proc)
        yield Stack(url, port, f"http://127.0.0.1:{admin}", log, proc, ports, www)
