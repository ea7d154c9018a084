"""A bulkhead per upstream: at most N requests in flight, at most Q waiting, then fail fast.

One slow upstream then ties up at most N + Q of the proxy's connections and coroutines;
requests for every other upstream never wait behind it. Overflow raises `BulkheadFull`
immediately (the proxy answers 503 with Retry-After) instead of queueing without bound.
Slots are handed over FIFO, directly from the releasing request to the oldest waiter, so a
burst of newcomers cannot starve a queued request.
"""

from __future__ import annotations

import asyncio
from collections import deque

from proxy.config.model import BulkheadPolicy


class Rejected(Exception):
    """The upstream was not tried; `retry_after` (seconds) is a hint for the client."""

    reason = "rejected"

    def __init__(self, upstream: str, message: str, retry_after: float = 1.0) -> None:
        super().__init__(f"upstream {upstream!r}: {message}")
        self.upstream = upstream
        self.retry_after = retry_after


class BulkheadFull(Rejected):
    reason = "bulkhead_full"


class Bulkhead:
    """Counting semaphore with a bounded FIFO queue and a queue timeout."""

    def __init__(self, policy: BulkheadPolicy, name: str = "upstream") -> None:
        self.policy = policy
        self.name = name
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.rejected = 0

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def try_acquire(self) -> bool:
        """Take a slot without waiting; False when none is free (or others are queued)."""
        if self.in_flight < self.policy.max_concurrent and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, queueing up to `queue_timeout` s; raise BulkheadFull on overflow."""
        if self.try_acquire():
            return
        if self.queued >= self.policy.max_queued:
            self.rejected += 1
            raise BulkheadFull(
                self.name,
                f"{self.in_flight} requests in flight (max_concurrent "
                f"{self.policy.max_concurrent}) and {self.queued} queued (max_queued "
                f"{self.policy.max_queued}); raise bulkhead limits in routes.yaml if expected",
                retry_after=max(1.0, self.policy.queue_timeout),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # Not `wait_for`: on Python 3.11 it returns the result of a future that completed
            # as the task was being cancelled, swallowing the cancellation, so a request whose
            # client left just as a slot was handed to it went on to the upstream anyway and
            # held the slot until the upstream's timeout.
            async with asyncio.timeout(self.policy.queue_timeout):
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self.release()  # the slot arrived just as we gave up: pass it on
                    else:
                        waiter.cancel()
                    raise
        except TimeoutError:
            self.rejected += 1
            raise BulkheadFull(
                self.name,
                f"queued {self.policy.queue_timeout}s without a free slot "
                f"(max_concurrent {self.policy.max_concurrent})",
                retry_after=max(1.0, self.policy.queue_timeout),
            ) from None
        finally:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def release(self) -> None:
        """Return a slot: hand it to the oldest live waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight unchanged: the slot changes hands
                return
        self.in_flight = max(0, self.in_flight - 1)
