"""Helpers shared by the shadow end-to-end tests: the counting app, routes, admin polling."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.procs import PYTHON, ROOT, running, wait_until


@dataclass(frozen=True)
class App:
    """A running app: its base URL and its process (so a test can stop it early)."""

    url: str
    proc: subprocess.Popen


@contextmanager
def counting_app(port: int, name: str, delay: float = 0.0) -> Iterator[App]:
    """tests/shadow_e2e/app.py as a real process."""
    args = [PYTHON, "-m", "tests.shadow_e2e.app", "--port", str(port), "--name", name]
    if delay:
        args += ["--delay", str(delay)]
    with running(args, ready_url=f"http://127.0.0.1:{port}/health") as proc:
        yield App(f"http://127.0.0.1:{port}", proc)


def counts(base: str) -> dict:
    """{"calls": {"GET /items/1": n, ...}, "shadow": {...}} as the app counted them."""
    return httpx.get(f"{base}/-/counts", timeout=5).json()


def items_route(name: str, mode: str, target: str, **shadow) -> dict:
    """A route for the app's /items resources; `shadow` keys go under `shadow:`."""
    route = {"name": name, "match": {"prefix": "/items"}, "mode": mode, "target": target}
    if shadow:
        route["shadow"] = shadow
    return route


def shadow_stats(admin: str, route: str) -> dict | None:
    """This route's entry in the proxy's live `GET /-/shadow` snapshot, or None."""
    snap = httpx.get(f"{admin}/-/shadow", timeout=5).json()
    return next((r for r in snap["routes"] if r["route"] == route), None)


def wait_compared(admin: str, route: str, n: int, timeout: float = 20.0) -> dict:
    """Poll until the proxy has finished `n` comparisons on `route`; its snapshot entry."""

    def done() -> dict | None:
        stats = shadow_stats(admin, route)
        return stats if stats and stats["compared"] >= n else None

    return wait_until(done, timeout=timeout, what=f"{n} comparisons on route {route}")


def wait_written(admin: str, n: int, timeout: float = 20.0) -> dict:
    """Poll until the proxy's diff store has written `n` records; the store's counters."""

    def done() -> dict | None:
        store = httpx.get(f"{admin}/-/shadow", timeout=5).json()["store"]
        return store if store.get("written", 0) >= n else None

    return wait_until(done, timeout=timeout, what=f"{n} records written to the diff store")


def report_json(config: Path, *extra: str) -> dict:
    """`python -m proxy.cli report -c CONFIG --format json` (the documented CLI), parsed."""
    out = subprocess.run(
        [PYTHON, "-m", "proxy.cli", "report", "-c", str(config), "--format", "json", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"report exited {out.returncode}: {out.stderr}"
    return json.loads(out.stdout)
