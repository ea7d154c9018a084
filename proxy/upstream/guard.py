"""One guard per upstream: breaker + bulkhead + retry budget behind one small interface.

The request path (see docs/resilience.md for the loop) does, per attempt:

    async with guard.slot(retry=attempt > 1) as slot:   # may raise Rejected, fast
        response = await send()
        slot.done(status=response.status)               # or slot.done(error=exc)

and between attempts asks `guard.may_retry(...)` and sleeps `guard.backoff(attempt)`.
Everything here is in-process arithmetic; when a shared store (Redis) is attached, the
guard only talks to it when the breaker is open and a probe is due. Closed-breaker
requests never wait on Redis: outcomes are batched and synced in the background.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from proxy.config.model import Upstream
from proxy.upstream.breaker import Breaker, Clock, Ticket, Window
from proxy.upstream.bulkhead import Bulkhead, BulkheadFull, Rejected
from proxy.upstream.retry import (
    RETRY_WINDOW,
    backoff,
    budget_allowance,
    retryable,
    window_allowance,
    within_budget,
    within_window,
)

# What `breaker.failures: gateway` counts (Envoy's consecutive_gateway_failure).
GATEWAY_STATUSES = frozenset({502, 503, 504})

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "BreakerOpen",
    "BulkheadFull",
    "Rejected",
    "RetryBudgetExhausted",
    "Slot",
    "UpstreamGuard",
]


class BreakerOpen(Rejected):
    reason = "breaker_open"


class RetryBudgetExhausted(Rejected):
    reason = "retry_budget"


class SharedBreaker(Protocol):
    """What a guard needs from a shared store (implemented by `state.RedisState`)."""

    @property
    def healthy(self) -> bool: ...

    def acquire_probe(self, guard: UpstreamGuard) -> Awaitable[tuple[str, float]]: ...

    def nudge(self) -> None: ...


@dataclass(slots=True)
class Delta:
    """Outcomes since the last sync with the shared store."""

    ok: int = 0
    bad: int = 0
    tail: int = 0  # failures after the last success in this batch
    had_success: bool = False
    tripped: bool = False  # this replica opened the breaker itself
    probe_ok: int = 0
    probe_bad: int = 0
    probe_released: int = 0  # probes that ended without a verdict (the client left)

    @property
    def empty(self) -> bool:
        return self == Delta()


class UpstreamGuard:
    """Admission, outcome accounting and retry decisions for one upstream."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
        on_transition: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.name = upstream.name
        self.retry_policy = upstream.retry
        self.clock = clock
        self.rand = rand
        self.breaker = Breaker(
            upstream.breaker,
            clock,
            None
            if on_transition is None
            else (lambda old, new: on_transition(self.name, old, new)),
        )
        # The fleet grants probes while the shared store answers (see `Breaker.gate`).
        self.breaker.gate = lambda: self.shared is not None and self.shared.healthy
        self.bulkhead = Bulkhead(upstream.bulkhead, upstream.name)
        self.gateway_only = upstream.breaker.failures == "gateway"
        self.retries_active = 0
        # Attempts admitted over the last RETRY_WINDOW s: "successes" are requests (first
        # attempts), "failures" retries; the budget over time compares the two.
        self.sent = Window(RETRY_WINDOW)
        self.shared: SharedBreaker | None = None
        self.delta = Delta()
        # Load on the same upstream in other replicas, as of the last sync.
        self.others_active = 0
        self.others_retries = 0
        self.shared_ratio: float | None = None
        self.counters = {"admitted": 0, "breaker_open": 0, "bulkhead_full": 0, "retry_budget": 0}

    def policy_key(self) -> tuple:
        """Guards are reused across reloads while this stays equal."""
        u = self.upstream
        return (u.retry, u.breaker, u.bulkhead)

    # -- admission -------------------------------------------------------------------------
    def slot(self, *, retry: bool = False) -> Slot:
        """An async context manager holding one attempt's place; see the module docstring."""
        return Slot(self, retry)

    def try_slot(self) -> Slot | None:
        """A first attempt's place, taken without waiting, or None when taking it would mean
        waiting or refusing (breaker not closed, a probe due, bulkhead full): the caller
        then takes `slot()` the usual way, which waits or raises as the policy says."""
        ticket = self.breaker.try_acquire()
        if ticket is None:
            return None
        if ticket.probe or not self.bulkhead.try_acquire():
            self.breaker.release(ticket)
            return None
        self.counters["admitted"] += 1
        self.sent.add(self.clock(), True)
        slot = Slot(self, False)
        slot.ticket = ticket
        return slot

    @property
    def active(self) -> int:
        """Requests in flight or queued here, plus those elsewhere in the fleet."""
        return self.bulkhead.in_flight + self.bulkhead.queued + self.others_active

    @property
    def retries(self) -> int:
        return self.retries_active + self.others_retries

    async def _admit(self, retry: bool) -> Ticket:
        if retry:
            if not within_budget(self.retry_policy, self.active, self.retries):
                self.counters["retry_budget"] += 1
                raise RetryBudgetExhausted(
                    self.name,
                    f"retry budget spent: {self.retries} retries active, "
                    f"{budget_allowance(self.retry_policy, self.active)} allowed",
                )
            requests, retried = self.sent.totals(self.clock())
            if not within_window(self.retry_policy, requests, retried):
                self.counters["retry_budget"] += 1
                raise RetryBudgetExhausted(
                    self.name,
                    f"retry budget spent: {retried} retries for {requests} requests in the "
                    f"last {RETRY_WINDOW:g}s, {window_allowance(self.retry_policy, requests)} "
                    "allowed",
                )
            self.retries_active += 1
        try:
            ticket = await self._breaker_ticket()
            try:
                await self.bulkhead.acquire()
            except BaseException:
                self.breaker.release(ticket)
                raise
        except BaseException as exc:
            if isinstance(exc, BulkheadFull):
                self.counters["bulkhead_full"] += 1
            if retry:
                self.retries_active -= 1
            raise
        self.counters["admitted"] += 1
        self.sent.add(self.clock(), not retry)
        return ticket

    async def _breaker_ticket(self) -> Ticket:
        ticket = self.breaker.try_acquire()
        if ticket is not None and ticket.probe and self.shared is not None and self.shared.healthy:
            # The fleet probes together: only the replica Redis grants may send it.
            try:
                verdict, remaining = await self.shared.acquire_probe(self)
            except BaseException:  # cancelled while asking: give the local probe back
                self.breaker.release(ticket)
                raise
            if verdict == "closed":
                self.breaker.force_close()
                ticket = self.breaker.try_acquire()
            elif verdict == "denied":
                self.breaker.release(ticket)
                ticket = None
                if self.breaker.probes == 0:
                    # Another replica's probe is out: ask again soon rather than when Redis
                    # would forget it, since its verdict usually comes within a second.
                    # (With a probe of ours out, its verdict decides: reopening here would
                    # make this replica drop it, and the fleet wait for it until open_for.)
                    self.breaker.force_open(min(max(remaining, 0.05), 1.0))
        if ticket is not None and ticket.probe:
            self.breaker.announce()  # a probe is sent: the breaker is half-open for real
        if ticket is None:
            self.counters["breaker_open"] += 1
            wait = self.breaker.retry_after()
            raise BreakerOpen(
                self.name,
                f"circuit breaker is {self.breaker.shown_state}; next probe in {wait:.1f}s",
                retry_after=max(1.0, float(math.ceil(wait))),
            )
        return ticket

    def _finish(self, ticket: Ticket, retry: bool, ok: bool | None) -> None:
        self.bulkhead.release()
        if retry:
            self.retries_active = max(0, self.retries_active - 1)
        if ok is None:
            self.breaker.release(ticket)
            if ticket.probe and self.shared is not None:
                # The fleet's grant goes back too: else every replica waits `open_for`
                # for a probe that will never report.
                self.delta.probe_released += 1
                self.shared.nudge()
            return
        self.record_result(ticket, ok)

    def record_result(self, ticket: Ticket, ok: bool) -> None:
        """Feed one outcome to the breaker and to the batch for the shared store."""
        before = self.breaker.generation
        was_closed = self.breaker.state == "closed"
        self.breaker.on_result(ticket, ok)
        d = self.delta
        if ticket.probe:
            if ticket.generation == before:
                if ok:
                    d.probe_ok += 1
                else:
                    d.probe_bad += 1
                if self.shared is not None:
                    self.shared.nudge()
            return
        if ticket.generation != before or not was_closed:
            return
        if ok:
            d.ok += 1
            d.tail = 0
            d.had_success = True
        else:
            d.bad += 1
            d.tail += 1
        if self.breaker.generation != before:  # this result tripped the breaker
            d.tripped = True
            if self.shared is not None:
                self.shared.nudge()

    def take_delta(self) -> Delta:
        delta, self.delta = self.delta, Delta()
        return delta

    # -- retries ---------------------------------------------------------------------------
    def may_retry(
        self,
        method: str,
        body_sent: bool,
        attempt: int,
        status: int | None,
        error: BaseException | None,
    ) -> bool:
        """Whether attempt `attempt` (1 = first) may be retried: policy, idempotency, budget.

        The budget is re-checked atomically by `slot(retry=True)`, which raises
        `RetryBudgetExhausted` if other requests took the last retry meanwhile.
        """
        return self._allowed(method, body_sent, attempt, status, error) and self._has_budget()

    def retry_denied_by_budget(
        self,
        method: str,
        body_sent: bool,
        attempt: int,
        status: int | None,
        error: BaseException | None,
    ) -> bool:
        """Whether the policy would retry attempt `attempt` and only the budget says no."""
        return self._allowed(method, body_sent, attempt, status, error) and not self._has_budget()

    def _allowed(
        self,
        method: str,
        body_sent: bool,
        attempt: int,
        status: int | None,
        error: BaseException | None,
    ) -> bool:
        return retryable(
            self.retry_policy,
            method=method,
            body_sent=body_sent,
            attempt=attempt,
            status=status,
            error=error,
        )

    def _has_budget(self) -> bool:
        if not within_budget(self.retry_policy, self.active, self.retries):
            return False
        requests, retried = self.sent.totals(self.clock())
        return within_window(self.retry_policy, requests, retried)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1..), full jitter."""
        return backoff(self.retry_policy, attempt, self.rand)

    # -- reporting -------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """For `GET /-/upstreams`: plain data, safe to serialise as JSON."""
        ok, bad = self.breaker.window.totals(self.clock())
        requests, retried = self.sent.totals(self.clock())
        return {
            "name": self.name,
            "breaker": {
                "state": self.breaker.shown_state,
                "retry_after": round(self.breaker.retry_after(), 3),
                "consecutive_failures": self.breaker.consecutive,
                "window": {"successes": ok, "failures": bad},
                "failure_ratio": round(bad / (ok + bad), 4) if ok + bad else 0.0,
                "shared_failure_ratio": self.shared_ratio,
            },
            "in_flight": self.bulkhead.in_flight,
            "queued": self.bulkhead.queued,
            "limits": {
                "max_concurrent": self.bulkhead.policy.max_concurrent,
                "max_queued": self.bulkhead.policy.max_queued,
            },
            "retries": {
                "active": self.retries,
                "allowed": budget_allowance(self.retry_policy, self.active),
                "window": {
                    "seconds": RETRY_WINDOW,
                    "requests": requests,
                    "retries": retried,
                    "allowed": window_allowance(self.retry_policy, requests),
                },
            },
            "fleet": {"active": self.others_active, "retries": self.others_retries},
            "shared": bool(self.shared is not None and self.shared.healthy),
            "counters": dict(self.counters),
        }


class ClientFault(Exception):
    """An attempt failed because of the client (a malformed or stalled request body), not
    the upstream: the breaker must not count it, or a few bad clients could open it for
    everyone."""


class Slot:
    """One attempt's admission. Call `done(status=...)` or `done(error=...)` before leaving.

    Leaving without `done` counts as success on a clean exit, as a failure when an
    exception escapes, and as nothing at all when the task was cancelled (the client
    went away: that says nothing about the upstream).
    """

    __slots__ = ("guard", "retry", "ticket", "outcome")

    def __init__(self, guard: UpstreamGuard, retry: bool) -> None:
        self.guard = guard
        self.retry = retry
        self.ticket: Ticket | None = None
        self.outcome: Literal["success", "failure"] | None = None

    @property
    def probe(self) -> bool:
        return bool(self.ticket and self.ticket.probe)

    def done(self, status: int | None = None, error: BaseException | None = None) -> None:
        """Record the outcome: an error is a failure, so is a 5xx (only 502, 503 and 504
        with `breaker.failures: gateway`); anything else is a success."""
        failed = error is not None or (
            status is not None
            and status >= 500
            and (not self.guard.gateway_only or status in GATEWAY_STATUSES)
        )
        self.outcome = "failure" if failed else "success"

    async def __aenter__(self) -> Slot:
        if self.ticket is None:  # `try_slot` admits ahead of time
            self.ticket = await self.guard._admit(self.retry)
        return self

    def close(self, *, cancelled: bool = False) -> None:
        """Leave without `async with` (the express path): the recorded outcome, or nothing
        when `cancelled` (the client went away)."""
        assert self.ticket is not None
        outcome = None if cancelled else (self.outcome or "success")
        self.guard._finish(
            self.ticket, self.retry, None if outcome is None else outcome == "success"
        )

    def withdraw(self) -> None:
        """Give back a place `try_slot` took for an attempt that was never made (every idle
        connection turned out stale): released, and not counted as admitted, since the
        attempt that is made instead is admitted on its own."""
        self.close(cancelled=True)
        self.guard.counters["admitted"] -= 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.ticket is not None
        outcome = self.outcome
        if outcome is None:
            if exc_type is None:
                outcome = "success"
            elif not issubclass(exc_type, Exception) or issubclass(exc_type, ClientFault):
                outcome = None  # CancelledError, KeyboardInterrupt, the client's fault
            else:
                outcome = "failure"
        self.guard._finish(
            self.ticket, self.retry, None if outcome is None else outcome == "success"
        )
