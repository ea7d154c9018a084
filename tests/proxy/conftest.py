"""Real proxy processes in front of real upstream processes, on ephemeral ports."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, ROOT, free_port, running, stop, wait_http


@dataclass
class Upstreams:
    legacy: str
    svc: str
    legacy_port: int
    svc_port: int


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    lp, sp = free_port(), free_port()
    with (
        running(
            [PYTHON, "-m", "tests.support.upstream", str(lp), "legacy"],
            ready_url=f"http://127.0.0.1:{lp}/ready",
        ),
        running(
            [PYTHON, "-m", "tests.support.upstream", str(sp), "svc"],
            ready_url=f"http://127.0.0.1:{sp}/ready",
        ),
    ):
        yield Upstreams(f"http://127.0.0.1:{lp}", f"http://127.0.0.1:{sp}", lp, sp)


@dataclass
class ProxyProc:
    url: str
    admin: str
    port: int
    admin_port: int
    config: Path
    proc: subprocess.Popen
    log: Path

    def write_config(self, text: str) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)  # atomic, as editors do

    def stop(self) -> int:
        return stop(self.proc)


def base_config(
    ups: Upstreams, port: int, admin_port: int, routes: str = "", extra: str = ""
) -> str:
    return (
        textwrap.dedent(
            f"""\
        version: 1
        listen: {{host: 127.0.0.1, port: {port}}}
        admin: {{host: 127.0.0.1, port: {admin_port}}}
        upstreams:
          legacy: {{url: "{ups.legacy}"}}
          svc:
            url: "{ups.svc}"
            timeout: {{connect: 1.0, read: 2.0, total: 5.0}}
        default: legacy
        """
        )
        + extra
        + (
            ("routes:\n" + textwrap.indent(textwrap.dedent(routes), "  "))
            if routes
            else "routes: []\n"
        )
    )


DEFAULT_ROUTES = """\
- name: svc-items
  match: {path: "/api/items/{id}", methods: [GET, HEAD, POST, PUT]}
  mode: extracted
  target: svc
  rewrite: "/v1/items/{id}"
- name: svc-prefix
  match: {prefix: "/svc"}
  mode: extracted
  target: svc
- name: legacy-api
  match: {prefix: "/api"}
  mode: legacy
  target: svc
"""


@pytest.fixture
def start_proxy(tmp_path: Path, upstreams: Upstreams):
    started: list[ProxyProc] = []

    def start(
        routes: str = DEFAULT_ROUTES, extra: str = "", args: tuple[str, ...] = ()
    ) -> ProxyProc:
        port, admin_port = free_port(), free_port()
        config = tmp_path / f"routes-{port}.yaml"
        config.write_text(base_config(upstreams, port, admin_port, routes, extra))
        log = tmp_path / f"proxy-{port}.log"
        ctx = running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), *args],
            ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        proc = ctx.__enter__()
        p = ProxyProc(
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{admin_port}",
            port,
            admin_port,
            config,
            proc,
            log,
        )
        p._ctx = ctx  # type: ignore[attr-defined]
        started.append(p)
        wait_http(p.url + "/", proc=proc)
        return p

    yield start
    for p in started:
        p._ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def proxy(start_proxy) -> ProxyProc:
    return start_proxy()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as c:
        yield c
