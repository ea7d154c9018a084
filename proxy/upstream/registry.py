"""All upstream guards of one proxy process, rebuilt from each new Config.

A reload keeps a guard (and with it the breaker's state, the in-flight count and the
queue) when the upstream's retry/breaker/bulkhead policies are unchanged, so reloading
routes.yaml never resets an open breaker or lets a bulkhead overflow. A changed policy gets
a fresh guard; requests already holding a slot on the old one finish there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from proxy.config.model import Config
from proxy.config.values import redact_url
from proxy.upstream.breaker import Clock
from proxy.upstream.guard import UpstreamGuard
from proxy.upstream.state import RedisState

log = logging.getLogger("strangler.upstream.state")


class GuardRegistry:
    """`get(name)` on the request path; `update(config)` on reload; `start`/`close` once."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
        key_prefix: str = "strangler:",
        sync_interval: float = 0.1,
        redis_timeout: float = 0.1,
        on_transition: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.on_transition = on_transition  # (upstream, old, new): Telemetry.breaker_changed
        self.clock = clock
        self.rand = rand
        self.key_prefix = key_prefix
        self.sync_interval = sync_interval
        self.redis_timeout = redis_timeout
        self.guards: dict[str, UpstreamGuard] = {}
        self._retired: list[UpstreamGuard] = []
        self.state: RedisState | None = None
        self._state_url: str | None = None
        self._started = False
        self._pending: asyncio.Task[None] | None = None
        self.update(config)

    def get(self, name: str) -> UpstreamGuard:
        try:
            return self.guards[name]
        except KeyError:
            known = ", ".join(sorted(self.guards)) or "none"
            raise KeyError(f"no guard for upstream {name!r} (known upstreams: {known})") from None

    def update(self, config: Config) -> None:
        """Adopt a new Config: keep unchanged guards, build new ones, drop removed ones."""
        guards: dict[str, UpstreamGuard] = {}
        for name, upstream in config.upstreams.items():
            old = self.guards.get(name)
            if old is not None and old.policy_key() == (
                upstream.retry,
                upstream.breaker,
                upstream.bulkhead,
            ):
                old.upstream = upstream  # url/timeouts may change freely
                guards[name] = old
            else:
                guard = UpstreamGuard(
                    upstream, clock=self.clock, rand=self.rand, on_transition=self.on_transition
                )
                if old is not None and old.shared is not None:
                    guard.shared = old.shared
                guards[name] = guard
        # A replaced guard still has requests in flight, maybe the fleet's probe: with a
        # shared store it keeps syncing their outcomes (same Redis keys) until it has none
        # left. Without one there is nothing to sync, so nothing is kept.
        if config.state:
            self._retired += [g for name, g in self.guards.items() if guards.get(name) is not g]
            self._prune_retired()
        else:
            self._retired = []
        self.guards = guards
        if config.state != self._state_url:
            self._state_url = config.state
            if self._started:
                self._pending = asyncio.get_running_loop().create_task(self._restart_state())

    def _syncing(self) -> list[UpstreamGuard]:
        """The guards whose outcomes the shared store hears: the current ones, and the
        replaced ones until their last request is done and reported."""
        self._prune_retired()
        return [*self.guards.values(), *self._retired]

    def _prune_retired(self) -> None:
        self._retired = [
            g
            for g in self._retired
            if g.bulkhead.in_flight or g.bulkhead.queued or not g.delta.empty
        ]

    def snapshot(self) -> dict[str, dict]:
        """Per upstream, for `GET /-/upstreams`."""
        return {name: guard.snapshot() for name, guard in sorted(self.guards.items())}

    def states(self) -> dict[str, str]:
        """Upstream -> breaker state, this process's live view (for the dashboard)."""
        return {name: guard.breaker.shown_state for name, guard in sorted(self.guards.items())}

    async def start(self) -> None:
        """Connect the shared store if `state:` is set; never fails if Redis is down."""
        self._started = True
        await self._restart_state()

    async def close(self) -> None:
        self._started = False
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None
        if self.state is not None:
            await self.state.close()
            self.state = None

    async def __aenter__(self) -> GuardRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _restart_state(self) -> None:
        if self.state is not None:
            await self.state.close()
            self.state = None
        if self._state_url:
            try:
                state = RedisState(
                    self._state_url,
                    self._syncing,
                    prefix=self.key_prefix,
                    interval=self.sync_interval,
                    timeout=self.redis_timeout,
                )
            except (TypeError, ValueError) as exc:  # validation should have caught it
                log.error(
                    "state store %s cannot be used (%s); breakers and retry budgets stay "
                    "per process",
                    redact_url(self._state_url),
                    exc,
                )
                return
            self.state = state
            await state.start()
