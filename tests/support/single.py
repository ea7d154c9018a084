"""A proxy process in front of one upstream, every request to it (tests that need no routes)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.procs import PYTHON, free_port, running


@contextmanager
def single_upstream_proxy(
    workdir: Path,
    upstream_port: int,
    *,
    name: str = "routes",
    env: dict[str, str] | None = None,
    timeout: str | None = None,
    stdout=None,
) -> Iterator[tuple[int, int, subprocess.Popen]]:
    """`strangler serve` with `default: legacy` pointing at `upstream_port` and no retries
    (`timeout`: the upstream's `timeout` mapping, as YAML; `stdout`: where its log lines
    go); yields the proxy port, the admin
    port and the process once it is ready."""
    port, admin = free_port(), free_port()
    config = workdir / f"{name}.yaml"
    extra = f", timeout: {timeout}" if timeout else ""
    config.write_text(
        f"""version: 1
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin}}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{upstream_port}", retry: {{retries: 0}}{extra}}}
default: legacy
routes: []
"""
    )
    with running(
        [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
        ready_url=f"http://127.0.0.1:{admin}/-/ready",
        env=env,
        stdout=stdout,
    ) as proc:
        yield port, admin, proc
