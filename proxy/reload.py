"""Hot reload: build a new runtime from routes.yaml and swap it in, or keep the old one.

Three triggers reach the same `Reloader.reload`: the file watcher (a cheap `stat` poll that
also sees editors' and `git checkout`'s atomic replace, which inotify on the old inode
would miss), SIGHUP, and `POST /-/reload` on the admin port. An invalid file never
replaces the running table: the error is logged, kept for `GET /-/config`, and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.runtime import Runtime, RuntimeHolder

log = logging.getLogger("strangler.reload")


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    at: float  # unix time
    ok: bool
    trigger: str  # watch | signal | admin | startup
    generation: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "ok": self.ok,
            "trigger": self.trigger,
            "generation": self.generation,
            "error": self.error,
        }


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Reloader:
    """Owns the swap; `build` turns a path into a `Runtime` or raises with a message."""

    def __init__(
        self,
        path: Path,
        holder: RuntimeHolder,
        build: Callable[[Path, int], Runtime],
        *,
        on_swap: Callable[[Runtime, Runtime], None] | None = None,
        on_event: Callable[[ReloadEvent], None] | None = None,
    ) -> None:
        self.path = path
        self.holder = holder
        self.build = build
        self.on_swap = on_swap
        self.on_event = on_event
        self.history: deque[ReloadEvent] = deque(maxlen=20)
        self.failures = 0
        self.successes = 0
        self.last_error: str | None = None
        self._seen = _fingerprint(path)

    def reload(self, trigger: str) -> ReloadEvent:
        self._seen = _fingerprint(self.path)
        old = self.holder.current
        generation = old.generation + 1
        try:
            new = self.build(self.path, generation)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good table
            self.failures += 1
            self.last_error = str(exc)
            event = ReloadEvent(time.time(), False, trigger, old.generation, self.last_error)
            log.error(
                "config reload (%s) rejected, keeping generation %d:\n%s",
                trigger,
                old.generation,
                exc,
            )
        else:
            self.holder.current = new
            self.successes += 1
            self.last_error = None
            event = ReloadEvent(time.time(), True, trigger, generation)
            log.info(
                "config reloaded (%s): generation %d, %d routes",
                trigger,
                generation,
                len(new.config.routes),
            )
            if self.on_swap is not None:
                self.on_swap(old, new)
        self.history.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    async def watch(self, interval: float = 0.5) -> None:
        """Poll the file; reload when its inode, mtime or size changes."""
        while True:
            await asyncio.sleep(interval)
            current = _fingerprint(self.path)
            if current is not None and current != self._seen:
                # Let a writer that truncates-then-writes finish before reading.
                await asyncio.sleep(0.05)
                if _fingerprint(self.path) != current:
                    continue
                self.reload("watch")
