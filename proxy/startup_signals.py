"""Signals that arrive while `strangler serve` is still starting (importing, loading its
table), before the event loop's handlers exist."""

from __future__ import annotations

import signal
from typing import Any


class _StartupSignals:
    """SIGHUP before a handler of the loop (or the supervisor) takes it. Its default
    action would kill a proxy still loading its table (a systemd `ExecReload`, a config
    sidecar), so it is remembered and the reload runs once the proxy serves."""

    hup = False

    def hold(self) -> None:
        signal.signal(signal.SIGHUP, self._held)

    def _held(self, _sig: int, _frame: Any) -> None:
        self.hup = True


STARTUP_SIGNALS = _StartupSignals()
