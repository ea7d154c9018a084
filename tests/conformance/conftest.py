"""Real proxy processes for the probes, shared by a test module.

`edge`: the proxy in front of two recording upstreams. `stack`: the proxy in front of
gunicorn running `wsgi_echo` (a WSGI app that reads bodies as Django does).

In `edge`, `legacy` is the default upstream; `svc` serves the `/svc` prefix and any request whose Host
is `other.example` (so a test can see which Host the router used). Both record the raw
bytes they receive (see `recorder.py`).
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.recorder import Recorder, recorder
from tests.support.procs import PYTHON, ROOT, free_port, running, wait_http

ROUTES = """\
- name: other-host
  match: {prefix: "/", host: "other.example"}
  mode: extracted
  target: svc
- name: svc-prefix
  match: {prefix: "/svc"}
  mode: extracted
  target: svc
"""


@dataclass
class Edge:
    """The proxy under test and the upstreams behind it."""

    port: int
    admin_port: int
    proc: subprocess.Popen
    log: Path
    legacy: Recorder
    svc: Recorder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def clear(self) -> None:
        self.legacy.clear()
        self.svc.clear()

    def alive(self) -> None:
        assert self.proc.poll() is None, "the proxy process died:\n" + self.log.read_text()[-3000:]


def config_text(port: int, admin_port: int, legacy: int, svc: int) -> str:
    return textwrap.dedent(
        f"""\
            version: 1
            listen: {{host: 127.0.0.1, port: {port}}}
            admin: {{host: 127.0.0.1, port: {admin_port}}}
            upstreams:
              legacy:
                url: "http://127.0.0.1:{legacy}"
                timeout: {{connect: 1.0, read: 3.0, total: 5.0}}
                retry: {{retries: 0}}
                breaker: {{consecutive_failures: 100000, min_requests: 100000}}
              svc:
                url: "http://127.0.0.1:{svc}"
                timeout: {{connect: 1.0, read: 3.0, total: 5.0}}
                retry: {{retries: 0}}
            default: legacy
            routes:
            """
    ) + textwrap.indent(ROUTES, "  ")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    with recorder() as legacy, recorder() as svc:
        port, admin_port = free_port(), free_port()
        config = tmp / "routes.yaml"
        config.write_text(config_text(port, admin_port, legacy.port, svc.port))
        log = tmp / "proxy.log"
        with (
            log.open("w") as out,
            running(
                [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
                ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            ) as proc,
        ):
            wait_http(f"http://127.0.0.1:{port}/", proc=proc)
            yield Edge(port, admin_port, proc, log, legacy, svc)


@pytest.fixture
def e(edge: Edge) -> Iterator[Edge]:
    """The shared edge, with empty recordings; checks the proxy survived the test."""
    edge.clear()
    yield edge
    edge.alive()


@dataclass
class Stack:
    port: int
    gunicorn_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("third-party")
    gport, port, admin = free_port(), free_port(), free_port()
    config = tmp / "routes.yaml"
    config.write_text(config_text(port, admin, gport, gport))
    gunicorn = [
        PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{gport}", "--workers", "1",
        "--keep-alive", "30", "tests.conformance.wsgi_echo:application",
    ]  # fmt: skip
    with (
        running(gunicorn, ready_url=f"http://127.0.0.1:{gport}/ready", cwd=ROOT),
        (tmp / "proxy.log").open("w") as log,
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        ) as proc,
    ):
        wait_http(f"http://127.0.0.1:{port}/", proc=proc)
        yield Stack(port, gport)
