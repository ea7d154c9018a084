"""The process's log stream: lines reach stdout from a writer thread, never from the loop.

stdout is often a pipe to a log collector (a container runtime, a systemd journal, a
shipper sidecar). A collector that stops reading fills the pipe in about 64 KiB, and a
write to a full pipe blocks: written from the event loop, the proxy stopped serving after
a few hundred requests (measured) until someone read its logs. Setting O_NONBLOCK on
stdout is no way out: the flag belongs to the pipe's open file description, shared with
the supervisor, the other workers and the shell that started them.

So lines are handed to one daemon thread, which does the blocking writes. While it is
blocked, lines wait, up to `backlog_limit` characters in all; past it they are dropped
and counted (`take_dropped`), so a stuck collector costs log lines, never requests.
A reader that is gone (EPIPE) ends the writing: what follows is discarded, as before.
"""

from __future__ import annotations

import io
import os
import threading

BACKLOG_LIMIT = 8 * 1024 * 1024  # characters of log lines waiting for a blocked stdout


class BackgroundLogStream(io.TextIOBase):
    """A text stream for `logging.StreamHandler` whose `write` and `flush` never block.

    `write` and `flush` are called under the handler's lock (one caller at a time) and
    take no lock of their own on the way in: the backlog is what was accepted (counted by
    them) less what was written (counted by the thread), each counter moved by one side.
    """

    def __init__(self, fd: int, *, backlog_limit: int = BACKLOG_LIMIT) -> None:
        super().__init__()
        self._fd = fd
        self._limit = backlog_limit
        self._wake = threading.Condition()
        self._pending: list[str] = []  # written, not yet handed to the thread (`flush`)
        self._queue: list[str] = []  # handed to the thread
        self._accepted = 0  # characters taken by `write`
        self._written = 0  # characters the thread has written (or given up on)
        self._dropped = 0
        self._broken = False
        self._thread: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to close: the descriptor is the process's stdout, and the last lines are
        written by `drain`. (IOBase's own close flushes, and the interpreter calls it while
        finalizing, when a thread can no longer start: `flush` would wait for ever.)"""

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        size = len(text)
        if self._broken:
            return size
        if self._accepted - self._written + size > self._limit:
            self._dropped += text.count("\n") or 1
            return size
        self._pending.append(text)
        self._accepted += size
        return size

    def flush(self) -> None:
        """Hand what was written to the writer thread (the handler flushes every line that
        is not an access line, access lines every 0.1 s: see RequestLog)."""
        if not self._pending:
            return
        with self._wake:
            self._queue.extend(self._pending)
            self._pending.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="strangler-log-writer", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def take_dropped(self) -> int:
        """Lines dropped since the last call, once the backlog has room again (0 before)."""
        if self._accepted - self._written > self._limit // 2:
            return 0
        dropped, self._dropped = self._dropped, 0
        return dropped

    def drain(self, timeout: float) -> bool:
        """Flush, and wait up to `timeout` s for every line to be written (at exit: the
        writer is a daemon thread). False when the stream stayed blocked."""
        self.flush()
        with self._wake:
            return self._wake.wait_for(
                lambda: self._written >= self._accepted or self._broken, timeout
            )

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue)
                batch, self._queue = self._queue, []
            text = "".join(batch)
            self._write_all(text.encode("utf-8", "backslashreplace"))
            with self._wake:
                self._written += len(text)
                self._wake.notify_all()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._broken:
            try:
                view = view[os.write(self._fd, view) :]
            except InterruptedError:
                continue
            except OSError:  # EPIPE, EBADF: nobody reads any more; the rest is discarded
                self._broken = True
