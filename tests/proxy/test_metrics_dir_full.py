"""`--workers N` with `PROMETHEUS_MULTIPROC_DIR` on a full file system (a small tmpfs):
the workers serve and say that their metrics cannot be kept there.

prometheus-client's files are sparse and written through a memory mapping; a page the
file system has no room for is SIGBUS, not an error. Each worker died at once, the
supervisor restarted it, it died again ('worker 0 exited with -7'), and no request was
answered.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.proxy.conftest import base_config
from tests.proxy.test_workers import fresh_get, worker_pids
from tests.support.procs import PYTHON, free_port, running, wait_until


@pytest.fixture
def full_tmpfs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs (a full file system): run it as root, as CI does")
    where = tmp_path / "metrics"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)  # not *.db: it stays
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # full
            pass
        finally:
            os.close(fd)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_workers_serve_with_the_metrics_directory_full(tmp_path, upstreams, full_tmpfs):
    port, admin_port = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(base_config(upstreams, port, admin_port))
    log = tmp_path / "proxy.log"
    with running(
        [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), "--workers", "2"],
        ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
        env={"PROMETHEUS_MULTIPROC_DIR": str(full_tmpfs)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    ) as proc:
        wait_until(lambda: len(worker_pids(proc.pid)) == 2, what="two workers")
        first = worker_pids(proc.pid)
        statuses = [
            fresh_get(f"http://127.0.0.1:{port}/api/items/{i}").status_code for i in range(40)
        ]
        assert statuses == [200] * 40
        assert httpx.get(f"http://127.0.0.1:{admin_port}/metrics").status_code == 200
        assert worker_pids(proc.pid) == first  # none died and came back
    text = log.read_text()
    assert "exited with" not in text, text
    assert "cannot grow (No space left on device)" in text, text
    assert "PROMETHEUS_MULTIPROC_DIR" in text
