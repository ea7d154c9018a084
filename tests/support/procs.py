"""Real processes for tests: ephemeral ports, readiness by polling, guaranteed cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


_handed_out: set[int] = set()


def _worker_share() -> tuple[int, int]:
    """(this pytest-xdist worker's index, the number of workers); (0, 1) when serial."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return 0, 1
    return int(worker[2:]) % count, count


_SHARE = _worker_share()


def free_port() -> int:
    """An ephemeral port the kernel just handed out (closed again, so a child can bind it).

    Never the same port twice in one test process: the kernel may hand a just-closed port
    out again, and two servers told to use one port make a test fail in confusing ways
    (one of them dies, and a readiness probe may be answered by the other). When the suite
    runs in several worker processes (`make test`), each takes only its own share of port
    numbers, so two workers never hand out one port between them either. (The share is by
    `port // 2`: Linux gives `bind()` odd ports and `connect()` even ones.)
    """
    index, count = _SHARE
    for _ in range(10_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if (port // 2) % count == index and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port for worker {index} of {count} in 10,000 tries")


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; raise with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling tolerates transient failures
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers with any status below 500 (or the process dies)."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            resp = httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            return False
        if url.endswith("/-/ready"):
            # The admin endpoint says so itself; any other server on that port does not.
            try:
                return resp.status_code == 200 and resp.json().get("ready") is True
            except ValueError:
                return False
        return resp.status_code < 500

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} right after {url}")
            return
        time.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Stop a process (and its process group) politely, then firmly."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    return proc.returncode


@contextmanager
def running(
    args: Sequence[str],
    *,
    ready_url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 30.0,
    stdout=None,
    stderr=None,
) -> Iterator[subprocess.Popen]:
    """Start `args` in its own process group, wait for `ready_url`, always stop it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        list(args),
        env=full_env,
        cwd=str(cwd or ROOT),
        start_new_session=True,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        if ready_url:
            wait_http(ready_url, timeout=timeout, proc=proc)
        yield proc
    finally:
        stop(proc)
