"""A real proxy process in front of two fault-injecting upstreams (legacy and extracted)."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.faulty import Faulty, faulty
from tests.support.procs import PYTHON, ROOT, free_port, running


@dataclass
class World:
    legacy: Faulty
    svc: Faulty
    other: Faulty


@dataclass
class Proxy:
    url: str
    admin: str
    log: Path
    config: Path

    def reload(self, text: str) -> dict:
        """Replace routes.yaml (atomically, as editors do) and reload it now."""
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)
        r = httpx.post(f"{self.admin}/-/reload", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with faulty("legacy") as legacy, faulty("extracted") as svc, faulty("other") as other:
        yield World(legacy, svc, other)


@pytest.fixture
def reset_world(world: World) -> World:
    for f in (world.legacy, world.svc, world.other):
        f.reset()
    return world


@pytest.fixture
def start_proxy(tmp_path: Path, reset_world: World) -> Iterator[Callable[..., Proxy]]:
    """start(svc=..., routes=..., top=..., legacy=...) -> Proxy; stopped after the test
    (`svc`: lines added to the svc upstream; `legacy`: flow-style fields added to legacy's)."""
    contexts = []

    def start(*, svc: str = "", routes: str, top: str = "", legacy: str = "") -> Proxy:
        port, admin_port = free_port(), free_port()
        w = reset_world
        text = textwrap.dedent(
            f"""\
            version: 1
            listen: {{host: 127.0.0.1, port: {port}}}
            admin: {{host: 127.0.0.1, port: {admin_port}}}
            upstreams:
              legacy: {{url: "{w.legacy.url}"{", " + legacy if legacy else ""}}}
              other: {{url: "{w.other.url}"}}
              svc:
                url: "{w.svc.url}"
            """
        )
        text += textwrap.indent(textwrap.dedent(svc), "    ") if svc else ""
        text += "default: legacy\n" + textwrap.dedent(top)
        text += "routes:\n" + textwrap.indent(textwrap.dedent(routes), "  ")
        config = tmp_path / f"routes-{port}.yaml"
        config.write_text(text)
        log = tmp_path / f"proxy-{port}.log"
        ctx = running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        ctx.__enter__()
        contexts.append(ctx)
        return Proxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", log, config)

    yield start
    for ctx in contexts:
        ctx.__exit__(None, None, None)
