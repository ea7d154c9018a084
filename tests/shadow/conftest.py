"""The diff engine, the store and the mirror, in process."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _mirror_never_yields(monkeypatch):
    # Mirrors here yield to a late event loop (proxy/shadow/mirror.py, BUSY_LAG) only past
    # a second of lag: these tests are about comparing, and a loaded test machine (the
    # suite runs in two processes) runs the loop late enough to hold every comparison
    # back. tests/shadow_e2e/test_busy_loop.py tests the yielding itself.
    monkeypatch.setattr("proxy.shadow.mirror.BUSY_LAG", 1.0)
