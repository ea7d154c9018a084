"""The diff store interface and the batching writer thread every backend shares.

`add()` is called on the event loop for every shadowed request, so it only appends to a
bounded in-memory buffer; one background thread writes batches to the backend and applies
retention. A full buffer drops the record and counts it rather than growing without bound or
blocking the proxy.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ..model import DiffRecord

log = logging.getLogger("strangler.shadow.store")
_WARN_EVERY = 60.0  # seconds between repeated warnings about the same failing store


class StoreUnusable(OSError):
    """The store cannot be used; the message names it, the cause and the fix."""


class DiffStore(ABC):
    """Append-only store of comparisons with bounded retention (count and age)."""

    def __init__(
        self,
        *,
        retention_count: int = 100_000,
        retention_days: float = 7.0,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        max_pending: int = 10_000,
        readonly: bool = False,
        lazy: bool = False,
    ) -> None:
        self.readonly = readonly  # report readers: never create, write or prune
        # Create the backend's file at the first write, not now (a proxy with no shadow route
        # yet needs no store, nor a writable folder for one); failures are then counted.
        self.lazy = lazy
        self.retention_count = int(retention_count)
        self.retention_days = float(retention_days)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._pending: deque[DiffRecord] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self.added = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._warned_at = -_WARN_EVERY
        self._last_prune = 0.0

    # ---- the writer side (called on the event loop) ---------------------------------------

    def add(self, record: DiffRecord) -> bool:
        """Queue one record for writing; never blocks on I/O. False when dropped."""
        if self._closed or self.readonly or len(self._pending) >= self._max_pending:
            self.dropped += 1
            return False
        self._pending.append(record)
        self.added += 1
        if self._thread is None:
            self._start()
        if len(self._pending) >= self._batch_size:
            with self._cond:
                self._cond.notify()
        return True

    def _start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{type(self).__name__}-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._closed:
                    self._cond.wait(self._flush_interval)
                if self._closed and not self._pending:
                    self._cond.notify_all()
                    return
                self._busy = True
            batch: list[DiffRecord] = []
            while self._pending and len(batch) < self._batch_size:
                batch.append(self._pending.popleft())
            try:
                if batch:
                    self._write_batch(batch)
                    self.written += len(batch)
                now = time.time()
                if now - self._last_prune >= 1.0 or self._closed:
                    self._prune(now)
                    self._last_prune = now
            except Exception as exc:  # noqa: BLE001 - a broken store must not kill the proxy
                self.failed += len(batch)
                self._failed(f"{type(exc).__name__}: {exc}", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _failed(self, error: str, lost: int) -> None:
        """Say that diffs are being lost: at once for a new cause, else once a minute (a
        store that is down fails every batch). The counters stay at `/-/shadow`."""
        now = time.monotonic()
        if error != self.last_error or now - self._warned_at >= _WARN_EVERY:
            log.warning(
                "shadow store %s failed to write %d diff(s), %d lost in all: %s",
                type(self).__name__,
                lost,
                self.failed,
                error,
                extra={"event": "shadow_store_failed"},
            )
            self._warned_at = now
        self.last_error = error

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is written (for shutdown, tests, the CLI)."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
                self._cond.notify_all()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, stop the writer thread and release the backend.

        One deadline for all of it: a writer stuck on a locked or unreachable store is left
        behind (a daemon thread) rather than waited for a second time."""
        deadline = time.monotonic() + timeout
        if not self.flush(timeout) and self._pending:
            log.warning(
                "shadow store %s: %d diff(s) not written before shutdown (%s)",
                type(self).__name__,
                len(self._pending),
                self.last_error or "the store did not answer in time",
            )
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._close_backend()

    def write(self, records: Sequence[DiffRecord]) -> None:
        """Synchronous write, bypassing the buffer (tools and tests)."""
        self._write_batch(list(records))
        self._prune(time.time())

    def stats(self) -> dict[str, Any]:
        return {
            "backend": type(self).__name__,
            "added": self.added,
            "written": self.written,
            "pending": len(self._pending),
            "dropped": self.dropped,
            "failed": self.failed,
            "last_error": self.last_error,
        }

    def _cutoff(self, now: float) -> float:
        return now - self.retention_days * 86_400.0

    # ---- backends -------------------------------------------------------------------------

    @abstractmethod
    def _write_batch(self, records: list[DiffRecord]) -> None:
        """Persist records (runs on the writer thread)."""

    @abstractmethod
    def _prune(self, now: float) -> None:
        """Drop records beyond `retention_count` or older than `retention_days`."""

    @abstractmethod
    def records(
        self, *, routes: Sequence[str] | None = None, since: float | None = None
    ) -> Iterator[DiffRecord]:
        """Stored records, oldest first, optionally only some routes and those at/after `since`."""

    def count(self) -> int:
        return sum(1 for _ in self.records())

    def _close_backend(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
