"""The bytes the shadow side holds in one process, bounded (`shadow.max_memory`).

A shadow comparison keeps the primary's answer and the request's body from the moment the
answer is relayed until the comparison is done: while the answer streams to the client
(`proxy.forward.BodyCapture`), while the job waits in its route's queue and while a worker
calls the candidate. Per-route `queue` and `concurrency` bound how many jobs wait, not how
big they are: 256 queued 8 MiB answers are 2 GiB. Every such byte is taken from one
`ShadowMemory` per process through a `Hold`; what does not fit is not kept (the comparison
is dropped as `memory_full`) and the client's answer is untouched.
"""

from __future__ import annotations

import logging

log = logging.getLogger("strangler.shadow")

DEFAULT_MAX_MEMORY = 64 * 1024 * 1024


class ShadowMemory:
    """A byte budget: `take` succeeds while `held + n <= limit`; `give` returns bytes."""

    __slots__ = ("limit", "held", "peak")

    def __init__(self, limit: int = DEFAULT_MAX_MEMORY) -> None:
        if limit < 0:
            raise ValueError(f"a memory limit cannot be negative: {limit}")
        self.limit = int(limit)
        self.held = 0
        self.peak = 0  # the most held at once since the process started

    def room(self, n: int = 0) -> bool:
        """Would `n` more bytes fit (and at least one, so a full budget says no to n=0)?"""
        return self.held + max(n, 1) <= self.limit

    def take(self, n: int) -> bool:
        if n < 0:
            raise ValueError(f"cannot take {n} bytes")
        if self.held + n > self.limit:
            return False
        self.held += n
        if self.held > self.peak:
            self.peak = self.held
        return True

    def give(self, n: int) -> None:
        self.held -= n
        if self.held < 0:  # a bug in the accounting: say so, and never grant beyond the limit
            log.error("shadow memory: %d bytes more given back than held", -self.held)
            self.held = 0

    def hold(self) -> Hold:
        """An empty hold on this budget, to grow as bytes are kept."""
        return Hold(self)

    def snapshot(self) -> dict[str, int]:
        return {"held": self.held, "limit": self.limit, "peak": self.peak}


class Hold:
    """Some of a `ShadowMemory`'s bytes, kept by one comparison. `release` gives them all
    back and is idempotent: whoever owns the hold last releases it, and a second release
    (a `finally` after a hand-over) does nothing. A released hold cannot grow again."""

    __slots__ = ("_memory", "size")

    def __init__(self, memory: ShadowMemory) -> None:
        self._memory: ShadowMemory | None = memory
        self.size = 0

    def grow(self, n: int) -> bool:
        """Keep `n` more bytes; False (nothing taken) when the budget has no room for them."""
        memory = self._memory
        if memory is None or not memory.take(n):
            return False
        self.size += n
        return True

    def release(self) -> None:
        memory, self._memory = self._memory, None
        if memory is not None:
            memory.give(self.size)
        self.size = 0

    @property
    def released(self) -> bool:
        return self._memory is None
