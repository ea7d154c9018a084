"""A circuit breaker per upstream (pure: the clock is injected, nothing sleeps).

closed --(N consecutive failures, or failure ratio >= R over the sliding window with at
least M requests)--> open --(open_for elapsed)--> half_open (admits `half_open_probes`
probes at once) --(a probe succeeds)--> closed, --(a probe fails)--> open again.

Every admission gets a `Ticket` stamped with the breaker's generation; results that come
back after a transition (a slow request admitted before the breaker opened) are ignored,
so an outage is never counted twice and a stale success never closes a fresh open.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from proxy.config.model import BreakerPolicy

log = logging.getLogger("strangler.upstream.breaker")
State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]
WINDOW_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class Ticket:
    """Proof of admission; hand it back to `Breaker.on_result` or `Breaker.release`."""

    generation: int
    probe: bool


class Window:
    """Success/failure counts over the last `span` seconds in `WINDOW_BUCKETS` buckets."""

    __slots__ = ("span", "width", "buckets")

    def __init__(self, span: float) -> None:
        self.span = max(span, 1e-3)
        self.width = self.span / WINDOW_BUCKETS
        self.buckets: deque[list[float]] = deque()  # [bucket index, successes, failures]

    def add(self, now: float, ok: bool, count: int = 1) -> None:
        index = int(now // self.width)
        buckets = self.buckets
        if buckets and buckets[-1][0] == index:
            # The usual case, once per request: nothing to trim in the bucket of the last
            # trim (it happened when this bucket began).
            buckets[-1][1 if ok else 2] += count
            return
        buckets.append([index, 0, 0])
        buckets[-1][1 if ok else 2] += count
        self._trim(index)

    def totals(self, now: float) -> tuple[int, int]:
        """(successes, failures) within the window ending at `now`."""
        self._trim(int(now // self.width))
        return (
            int(sum(b[1] for b in self.buckets)),
            int(sum(b[2] for b in self.buckets)),
        )

    def clear(self) -> None:
        self.buckets.clear()

    def _trim(self, index: int) -> None:
        oldest = index - WINDOW_BUCKETS + 1
        while self.buckets and self.buckets[0][0] < oldest:
            self.buckets.popleft()


class Breaker:
    """Closed / open / half-open for one upstream, decided from local observations.

    `force_open` / `force_close` let a shared store (Redis) impose the fleet's decision.
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Clock = time.monotonic,
        on_transition: Callable[[State, State], None] | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.on_transition = on_transition  # (old, new), e.g. for metrics; must not raise
        self.window = Window(policy.window)
        self.consecutive = 0
        self.generation = 0
        self._closed_ticket = Ticket(0, probe=False)
        self.probes = 0  # probes in flight while half-open
        self._state: State = "closed"
        self._open_until = 0.0
        self.transitions: deque[tuple[float, State]] = deque(maxlen=32)
        # With a shared store (Redis) the fleet grants probes: while `gate()` says so, an
        # open breaker whose time is up moves to half-open quietly (not reported), and is
        # reported by `announce()` once a probe is really sent. A replica whose probe the
        # fleet denies goes back to open without a word: else every replica would report
        # open -> half_open -> open each time it asked (and every sync, without traffic),
        # a flapping breaker in the metrics that the fleet never had.
        self.gate: Callable[[], bool] | None = None
        self.reported: State = "closed"  # the last state told to `on_transition`

    # -- reading -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current state; an open breaker whose time is up reads as half-open."""
        if self._state == "open" and self.clock() >= self._open_until:
            self._move("half_open", quiet=self.gate is not None and self.gate())
        return self._state

    @property
    def shown_state(self) -> State:
        """The state as reported (metrics, `GET /-/upstreams`): a breaker waiting for the
        fleet's grant of a probe still reads as open."""
        self.state  # noqa: B018 - an open breaker whose time is up moves on
        return self.reported

    def announce(self) -> None:
        """Report a quiet move (see `gate`) now that a probe is sent."""
        self._report(self._state)

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._open_until - self.clock())

    def failure_ratio(self) -> float:
        ok, bad = self.window.totals(self.clock())
        return bad / (ok + bad) if ok + bad else 0.0

    # -- admitting -----------------------------------------------------------------------
    def try_acquire(self) -> Ticket | None:
        """A ticket if a request may go to the upstream now, else None (reject fast)."""
        state = self.state
        if state == "closed":
            ticket = self._closed_ticket  # immutable: one per generation serves every request
            if ticket.generation != self.generation:
                ticket = self._closed_ticket = Ticket(self.generation, probe=False)
            return ticket
        if state == "half_open" and self.probes < max(1, self.policy.half_open_probes):
            self.probes += 1
            return Ticket(self.generation, probe=True)
        return None

    def release(self, ticket: Ticket) -> None:
        """Give a ticket back without an outcome (the client went away, a bulkhead said no)."""
        if ticket.probe and ticket.generation == self.generation and self.probes > 0:
            self.probes -= 1

    def on_result(self, ticket: Ticket, ok: bool) -> None:
        """Count an outcome; may trip or close the breaker."""
        if ticket.generation != self.generation:
            return  # admitted before the last transition: says nothing about now
        now = self.clock()
        if ticket.probe:
            self.probes = max(0, self.probes - 1)
            if self._state == "half_open":
                if ok:
                    self.force_close()
                else:
                    self.force_open(self.policy.open_for)
            return
        if self._state != "closed":
            return
        self.window.add(now, ok)
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self._should_trip(now):
            self.force_open(self.policy.open_for)

    def _should_trip(self, now: float) -> bool:
        policy = self.policy
        if policy.consecutive_failures > 0 and self.consecutive >= policy.consecutive_failures:
            return True
        ok, bad = self.window.totals(now)
        total = ok + bad
        return (
            policy.min_requests > 0
            and total >= policy.min_requests
            and 0 < policy.failure_ratio <= bad / total
        )

    # -- transitions ---------------------------------------------------------------------
    def force_open(self, remaining: float) -> None:
        """Open for `remaining` more seconds (a new generation unless already open)."""
        deadline = self.clock() + max(0.0, remaining)
        if self._state != "open":
            self._move("open")
        self._open_until = deadline

    def force_close(self) -> None:
        if self._state != "closed":
            self._move("closed")

    def _move(self, state: State, *, quiet: bool = False) -> None:
        self._state = state
        self.generation += 1
        self.probes = 0
        if state == "closed":
            self.consecutive = 0
            self.window.clear()
        if not quiet:
            self._report(state)

    def _report(self, state: State) -> None:
        old = self.reported
        if old == state:
            return  # back where the last report left it (a denied probe): nothing happened
        self.reported = state
        self.transitions.append((self.clock(), state))
        if self.on_transition is not None:
            try:
                self.on_transition(old, state)
            except Exception:  # noqa: BLE001 - reporting must never break a request
                log.exception("breaker transition callback failed")
