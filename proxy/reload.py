"""Hot reload: build a new runtime from routes.yaml and swap it in, or keep the old one.

Three triggers reach the same `Reloader.reload_async`: the file watcher (a cheap `stat` poll that
also sees editors' and `git checkout`'s atomic replace, which inotify on the old inode
would miss), SIGHUP, and `POST /-/reload` on the admin port. An invalid file never
replaces the running table: the error is logged, kept for `GET /-/config`, and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
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


def _fingerprint(path: Path) -> tuple[int, int, int, int] | None:
    # ctime too: `chmod` fixing a file the last reload could not read changes nothing else.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except OSError:
        return None


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
        self._loaded = _digest(path)  # the contents the running table was built from
        self._lock: asyncio.Lock | None = None
        self._asked = 0  # reload_async calls so far
        self._covered = 0  # calls answered by the last build (it started after them)
        self._last: ReloadEvent | None = None

    async def reload_async(self, trigger: str) -> ReloadEvent:
        """Build in a thread, swap on the loop: a table of thousands of routes takes a
        second or more to build, and traffic must not stop meanwhile. Triggers that come
        during a build share the next one (20 admin POSTs are one or two builds, not 20);
        each caller gets the outcome of a build that read the file after it asked."""
        self._asked += 1
        ticket = self._asked
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._covered >= ticket and self._last is not None:
                return self._last
            covers = self._asked
            self._seen = _fingerprint(self.path)
            generation = self.holder.current.generation + 1
            loop = asyncio.get_running_loop()
            try:
                new, digest = await loop.run_in_executor(None, self._read_and_build, generation)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the last good table
                event = self._finish(trigger, None, exc)
            else:
                self._loaded = digest
                event = self._finish(trigger, new, None)
            self._covered, self._last = covers, event
            return event

    def _read_and_build(self, generation: int) -> tuple[Runtime, bytes | None]:
        digest = _digest(self.path)
        return self.build(self.path, generation), digest

    def _finish(self, trigger: str, new: Runtime | None, exc: Exception | None) -> ReloadEvent:
        old = self.holder.current
        if new is None:
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
            event = ReloadEvent(time.time(), True, trigger, new.generation)
            log.info(
                "config reloaded (%s): generation %d, %d routes",
                trigger,
                new.generation,
                len(new.config.routes),
            )
            if self.on_swap is not None:
                self.on_swap(old, new)
        self.history.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    async def watch(self, interval: float = 0.25) -> None:
        """Poll the file; reload when its inode, times or size change, or it disappears
        (a failed reload then says so: logged, at `/-/config`, counted)."""
        while True:
            await asyncio.sleep(interval)
            current = _fingerprint(self.path)
            if current != self._seen:
                # Let a writer that truncates-then-writes finish before reading.
                await asyncio.sleep(0.05)
                if _fingerprint(self.path) != current:
                    continue
                # Only the ctime moved (a hard link, a chmod by config management) and the
                # contents are the running table's: nothing to rebuild (seconds of CPU for a
                # big table). A save or a `touch` moves the mtime and reloads, translators
                # included, as the docs promise.
                ctime_only = (
                    self._seen is not None
                    and current is not None
                    and (current[:2] + current[3:] == self._seen[:2] + self._seen[3:])
                )
                unchanged = ctime_only and self._loaded is not None
                if unchanged and _digest(self.path) == self._loaded and self.last_error is None:
                    self._seen = current
                    continue
                await self.reload_async("watch")
