"""Breaker state, retry budgets and rate-limit budgets shared by every replica through Redis.

Without `state:` in routes.yaml each process decides alone (the guards need nothing from
here). With `state: "redis://host:6379/0"` the replicas trip together and recover together:

- The hot path never waits on Redis while the breaker is closed. Each guard batches its
  outcomes; a background task pushes every guard's batch in one pipelined round trip per
  `interval` (default 100 ms) and adopts the fleet's verdict. The price: a replica may send
  up to one interval's worth of requests to an upstream another replica already declared
  dead, and a trip by ratio sees the fleet's window up to one interval late.
- Transitions are Lua scripts using Redis's own clock (`TIME`), so replicas with skewed
  clocks still agree on when the open period ends.
- Half-open probes are granted by Redis, so the whole fleet sends `half_open_probes` probes,
  not that many per replica. That costs one round trip per probe, only while open.
- Every call has a short timeout and no client-side retries. When Redis fails, each replica
  logs it once, keeps deciding from its local breaker (which it maintains all along), and
  keeps retrying the connection every interval; when Redis answers again it logs that once,
  pushes its local verdict (an open local breaker re-opens the shared one) and shares again.

- A `scope: shared` rate limit costs one round trip per request on its route (a Lua GCRA
  step on Redis's clock); while Redis is unreachable those routes count per process.

Keys (one hash tag per upstream, Redis Cluster safe; all expire when unused), where `<u>`
is the upstream's name, '@' and a digest of its URL:
`<prefix>{<u>}:breaker` hash state/opened_at/consecutive/probes/probe_at,
`<prefix>{<u>}:window` hash of bucketed counters `s:<bucket>` / `f:<bucket>`,
`<prefix>{<u>}:load` hash replica-id -> "active:retries:expires_ms",
`<prefix>rl:<budget>` the next due time (µs) of one rate-limit budget, where `<budget>` is
a digest of the route, its policy and the client's key (an API key is never stored).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from proxy.config.values import redact_url
from proxy.upstream.guard import UpstreamGuard

log = logging.getLogger("strangler.upstream.state")
_SAY_EVERY = 10.0  # seconds between lines about the store's reachability

_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok, bad, tail = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local had_ok, tripped = tonumber(ARGV[4]), tonumber(ARGV[5])
local probe_ok, probe_bad = tonumber(ARGV[6]), tonumber(ARGV[7])
local limit, ratio, minreq = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local window, open_for = tonumber(ARGV[11]), tonumber(ARGV[12])
local replica, load_ttl, key_ttl = ARGV[13], tonumber(ARGV[16]), tonumber(ARGV[17])
local active, retries = tonumber(ARGV[14]), tonumber(ARGV[15])
local released, local_open = tonumber(ARGV[18]), tonumber(ARGV[19])

local b = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'consecutive')
-- No shared state at all (flushed, evicted, a new empty Redis) while this replica's breaker
-- is open: the fleet re-learns it is open, rather than everyone closing on a dead upstream.
if not b[1] and local_open == 1 then tripped = 1 end
local state = b[1] or 'closed'
local opened_at = tonumber(b[2] or '0')
local consec = tonumber(b[3] or '0')

local width = math.max(1, math.floor(window / 10))
local idx = math.floor(now / width)
if state == 'closed' then
  if ok > 0 then redis.call('HINCRBY', KEYS[2], 's:' .. idx, ok) end
  if bad > 0 then redis.call('HINCRBY', KEYS[2], 'f:' .. idx, bad) end
  if had_ok == 1 then consec = tail else consec = consec + tail end
end
local sok, sbad = 0, 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local f = fields[i]
  local n = tonumber(string.sub(f, 3))
  if n == nil or n <= idx - 10 then
    redis.call('HDEL', KEYS[2], f)
  elseif string.sub(f, 1, 1) == 's' then
    sok = sok + tonumber(fields[i + 1])
  else
    sbad = sbad + tonumber(fields[i + 1])
  end
end

local function open()
  state = 'open'; opened_at = now; consec = 0; sok = 0; sbad = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'probes', 0)
end
local function close()
  state = 'closed'; consec = 0; sok = 0; sbad = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'probes', 0)
end

if state == 'closed' then
  local total = sok + sbad
  if tripped == 1 or (limit > 0 and consec >= limit)
     or (minreq > 0 and ratio > 0 and total >= minreq and sbad >= ratio * total) then
    open()
  end
elseif state == 'half_open' then
  if probe_bad > 0 then open() elseif probe_ok > 0 then close()
  elseif released > 0 then
    local held = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
    redis.call('HSET', KEYS[1], 'probes', math.max(0, held - released))
  end
end
redis.call('HSET', KEYS[1], 'state', state, 'opened_at', opened_at, 'consecutive', consec)
redis.call('PEXPIRE', KEYS[1], key_ttl)
redis.call('PEXPIRE', KEYS[2], key_ttl)

redis.call('HSET', KEYS[3], replica, active .. ':' .. retries .. ':' .. (now + load_ttl))
redis.call('PEXPIRE', KEYS[3], key_ttl)
local oa, orr = 0, 0
local load = redis.call('HGETALL', KEYS[3])
for i = 1, #load, 2 do
  local a, r, exp = string.match(load[i + 1], '^(%d+):(%d+):(%d+)$')
  if exp == nil or tonumber(exp) < now then
    redis.call('HDEL', KEYS[3], load[i])
  elseif load[i] ~= replica then
    oa = oa + tonumber(a); orr = orr + tonumber(r)
  end
end
local remaining = 0
if state == 'open' then remaining = math.max(0, opened_at + open_for - now) end
return {state, remaining, sok, sbad, oa, orr}
"""

_PROBE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_for, max_probes, key_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probes', 'probe_at')
local state = b[1] or 'closed'
if state == 'closed' then return {'closed', 0} end
local opened_at = tonumber(b[2] or '0')
local probes = tonumber(b[3] or '0')
local probe_at = tonumber(b[4] or '0')
if state == 'open' then
  if now < opened_at + open_for then return {'denied', opened_at + open_for - now} end
  probes = 0
elseif now - probe_at > open_for then
  probes = 0 -- the replica holding the probes went away without an answer
end
if probes < max_probes then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probes', probes + 1, 'probe_at', now)
  redis.call('PEXPIRE', KEYS[1], key_ttl)
  return {'granted', 0}
end
return {'denied', math.max(0, probe_at + open_for - now)}
"""


# GCRA (see proxy.filters.ratelimit) on Redis's clock, in microseconds: one key per budget
# holding its theoretical arrival time. Returns {1} when allowed, else {0, wait, ahead}. A
# negative interval gives back that much of a request taken earlier (always {1}).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if due < now then due = now end
if interval < 0 then
  local back = due + interval
  if back <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', math.floor((back - now) / 1000) + 1)
  end
  return {1}
end
local ahead = due - now
if ahead > tolerance then return {0, ahead - tolerance, ahead} end
local nxt = due + interval
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.floor((nxt - now) / 1000) + 1)
return {1}
"""


def split_prefix(url: str, default: str) -> tuple[str, str]:
    """Take an optional `?prefix=` out of the state URL (redis-py would reject it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = default
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


MAX_BUDGET_CALLS = 32  # concurrent rate-limit calls to Redis per process
# Syncs in a row that time out before Redis is said to be down. A refused or reset
# connection is down at once; a timeout may be this process's own: an event loop running
# late (a burst of clients, a paused container) fires the call's deadline before it reads
# the answer waiting in the socket, and one late loop must not switch sharing off.
DOWN_AFTER_TIMEOUTS = 3
BUDGET_QUEUE_WAIT = 2.0  # seconds a request waits for its turn before counting locally


class SharedStateDown(Exception):
    """Redis did not answer; the decision is this process's alone."""


class RedisState:
    """The shared store: one background sync task for all guards of one process."""

    def __init__(
        self,
        url: str,
        guards: Callable[[], Iterable[UpstreamGuard]],
        *,
        prefix: str = "strangler:",
        interval: float = 0.1,
        timeout: float = 0.1,
        replica_id: str | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"state: {redact_url(url)!r} is not a Redis URL; write "
                '"redis://host:6379/0" (optionally "?prefix=name:") or remove state:'
            )
        self.url, self.prefix = split_prefix(url, prefix)
        self.guards = guards
        self.interval = interval
        # `?socket_timeout=` on the URL is the state timeout: redis-py reads it for its
        # sockets, and every deadline here derives from it (validated at load).
        given = dict(parse_qsl(urlsplit(self.url).query)).get("socket_timeout")
        self.timeout = timeout = float(given) if given else timeout
        self.replica_id = (
            replica_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        # redis-py is imported here, not with the module: a tenth of a second of every
        # start, for the proxies (most) that share no state.
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._sync = self.client.register_script(_SYNC)
        self._probe = self.client.register_script(_PROBE)
        self._gcra = self.client.register_script(_GCRA)
        self._healthy = False
        self._ever_connected = False
        self._cause: str | None = None  # the kind of error Redis was last said to fail with
        self._said = (-_SAY_EVERY, -_SAY_EVERY)  # when the last two lines were said
        self._unsaid = 0
        self._held: tuple[str, str, str] | None = None  # the latest change not yet said
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.syncs = 0
        self.failures = 0
        self._timeouts = 0  # syncs in a row that timed out while Redis was thought healthy
        self._budget_calls = asyncio.Semaphore(MAX_BUDGET_CALLS)  # shared rate-limit calls
        self.budget_failures = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    def keys(self, guard: UpstreamGuard) -> list[str]:
        """One upstream's keys. The hash tag holds the upstream's name and a digest of its
        URL: replicas of one deployment share them, while another deployment using the
        same Redis database with an upstream of the same name (every table has a `legacy`)
        does not open this one's breakers."""
        where = hashlib.blake2b(guard.upstream.url.encode(), digest_size=4).hexdigest()
        base = f"{self.prefix}{{{guard.name}@{where}}}"
        return [f"{base}:breaker", f"{base}:window", f"{base}:load"]

    async def start(self) -> None:
        """Sync once (so the first requests already see the fleet's state), then loop."""
        await self.sync_once()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="strangler-state")

    async def close(self) -> None:
        """Stop syncing and disconnect; guards go back to purely local decisions."""
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Cooperative exit first; cancel only if a Redis call is stuck past its timeouts.
            done, _ = await asyncio.wait({task}, timeout=self.timeout * 10 + 1)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for guard in list(self.guards()):
            if guard.shared is self:
                guard.shared = None
        await self.client.aclose()

    def nudge(self) -> None:
        """Sync now rather than at the next tick (after a local trip or a probe result)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            if self._closed:
                return
            self._wake.clear()
            await self.sync_once()
            self._say_held()

    async def sync_once(self) -> bool:
        """Push every guard's batch, adopt the fleet's verdict; False if Redis failed."""
        guards = [g for g in self.guards()]
        if not guards:
            return self._healthy
        batches = [(g, g.take_delta(), g.breaker.generation) for g in guards]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for guard, delta, _ in batches:
                    await self._sync(
                        keys=self.keys(guard), args=self._args(guard, delta), client=pipe
                    )
                async with asyncio.timeout(self.timeout * 5):
                    results = await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis or its client, whatever it is
            self._failed(exc, guards)
            return False
        self._timeouts = 0
        self._regained(guards)
        for (guard, _delta, generation), result in zip(batches, results, strict=True):
            self._adopt(guard, result, generation)
        self.syncs += 1
        return True

    def _args(self, guard: UpstreamGuard, delta) -> list:
        p = guard.breaker.policy
        tripped = delta.tripped or (self._rejoining and guard.breaker.state == "open")
        key_ttl = int(max(60.0, 4 * (p.open_for + p.window)) * 1000)
        return [
            delta.ok,
            delta.bad,
            delta.tail,
            int(delta.had_success),
            int(tripped),
            delta.probe_ok,
            delta.probe_bad,
            p.consecutive_failures,
            repr(float(p.failure_ratio)),
            p.min_requests,
            int(p.window * 1000),
            int(p.open_for * 1000),
            self.replica_id,
            guard.bulkhead.in_flight + guard.bulkhead.queued,
            guard.retries_active,
            int(max(1.0, 10 * self.interval) * 1000),
            key_ttl,
            delta.probe_released,
            int(guard.breaker.state == "open"),
        ]

    @property
    def _rejoining(self) -> bool:
        return not self._healthy

    def _adopt(self, guard: UpstreamGuard, result: list, generation: int) -> None:
        state = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        remaining = int(result[1]) / 1000.0
        ok, bad = int(result[2]), int(result[3])
        guard.shared_ratio = round(bad / (ok + bad), 4) if ok + bad else 0.0
        guard.others_active, guard.others_retries = int(result[4]), int(result[5])
        breaker = guard.breaker
        if breaker.generation != generation:
            return  # the local breaker moved while we were away: it syncs that next time
        local = breaker.state
        if state == "open":
            if remaining > 0 or local != "half_open":
                breaker.force_open(remaining)
            # else the open period is over here and in Redis, and nobody probes yet: the
            # next request asks for the probe (reopening at 0 s would only move this
            # breaker's generation, and drop the verdict of a probe being granted now)
        elif state == "closed" and local != "closed":
            breaker.force_close()
        elif state == "half_open" and local == "closed":
            breaker.force_open(0.0)  # the next request asks Redis for a probe

    async def acquire_probe(self, guard: UpstreamGuard) -> tuple[str, float]:
        """'granted' | 'denied' (with seconds to wait) | 'closed'; 'granted' if Redis fails."""
        p = guard.breaker.policy
        try:
            async with asyncio.timeout(self.timeout * 2):
                verdict, wait = await self._probe(
                    keys=self.keys(guard)[:1],
                    args=[
                        int(p.open_for * 1000),
                        max(1, p.half_open_probes),
                        int(max(60.0, 4 * (p.open_for + p.window)) * 1000),
                    ],
                )
        except Exception as exc:  # noqa: BLE001 - Redis or its client, whatever it is
            if self._healthy and _timed_out(exc):
                # Maybe this replica's late loop, as for a sync: whether Redis is down is
                # the sync loop's call (several probes timing out in one late tick must not
                # count as several syncs), asked at once.
                self.nudge()
            else:
                self._lost(exc, list(self.guards()))
            return "granted", 0.0  # local decision stands
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        return verdict, int(wait) / 1000.0

    async def take_budget(
        self,
        budget: str,
        interval: float,
        tolerance: float,
        *,
        give_back: float | None = None,
    ) -> tuple[float, float] | None:
        """Spend one request of a shared rate-limit budget: None when it may pass, else
        (seconds to wait, seconds until the budget is whole). With `give_back`, return that
        many seconds (at most `interval`) of one request an earlier call spent (None).
        Raises `SharedStateDown` when Redis cannot say (the caller counts locally instead)."""
        if give_back is not None:
            give_back = min(give_back, interval)
            if round(give_back * 1e6) <= 0:
                return None  # paid back by time already: nothing to return
        # At most `MAX_BUDGET_CALLS` requests ask Redis at once: a burst of clients queues
        # for its turn (the pool is not exhausted, and each call takes a fraction of a
        # millisecond), and each call has the state timeout. A request whose call fails is
        # counted here alone; whether Redis is down is the sync loop's call, so a burst
        # cannot switch sharing off for the fleet. Only a queue that does not move for
        # `BUDGET_QUEUE_WAIT` (Redis stalled) sends requests to the local count.
        if not self._healthy:
            raise SharedStateDown(self.url)
        try:
            async with asyncio.timeout(BUDGET_QUEUE_WAIT):
                await self._budget_calls.acquire()
        except TimeoutError as exc:
            self.budget_failures += 1
            raise SharedStateDown(self.url) from exc
        if not self._healthy:  # found down while this request queued: do not ask it again
            self._budget_calls.release()
            raise SharedStateDown(self.url)
        step = max(1, round(interval * 1e6)) if give_back is None else round(give_back * 1e6)
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._gcra(
                    keys=[f"{self.prefix}rl:{budget}"],
                    args=[
                        step if give_back is None else -step,
                        round(tolerance * 1e6),
                    ],
                )
        except Exception as exc:  # noqa: BLE001 - Redis or its client, whatever it is
            self.budget_failures += 1
            self.nudge()  # let the sync loop find out whether Redis is really gone
            raise SharedStateDown(self.url) from exc
        finally:
            self._budget_calls.release()
        if int(result[0]) == 1:
            return None
        return int(result[1]) / 1e6, int(result[2]) / 1e6

    def _failed(self, exc: BaseException, guards: list[UpstreamGuard]) -> None:
        """A sync failed: Redis is lost, unless it only timed out and fewer than
        `DOWN_AFTER_TIMEOUTS` syncs in a row did (then the sync loop asks again at once)."""
        if self._healthy and _timed_out(exc):
            self._timeouts += 1
            if self._timeouts < DOWN_AFTER_TIMEOUTS:
                self.failures += 1
                self.nudge()
                return
        self._lost(exc, guards)

    def _lost(self, exc: BaseException, guards: list[UpstreamGuard]) -> None:
        self.failures += 1
        self._timeouts = 0
        cause = type(exc).__name__
        if self._healthy or cause != self._cause:
            # Down, or down for a new kind of reason (refused, then a wrong password).
            self._say(
                "state store %s unreachable (%s); breakers, retry budgets and shared rate "
                "limits fall back to per-process state until it answers again",
                f"{cause}: {exc}",
                event="state_store_down",
            )
            self._cause = cause
        self._healthy = False
        for guard in guards:
            guard.others_active = guard.others_retries = 0
            guard.shared_ratio = None

    def _regained(self, guards: list[UpstreamGuard]) -> None:
        if not self._healthy:
            if self._cause is not None:  # it was said to be down (at startup too)
                self._say(
                    "state store %s reachable%s; sharing breaker state",
                    " again" if self._ever_connected else "",
                    event="state_store_up",
                )
            self._healthy = True
            self._ever_connected = True
            self._cause = None
        for guard in guards:
            guard.shared = self

    def _say(self, message: str, detail: str, *, event: str) -> None:
        """One line per change of state or cause. A Redis flapping (at its memory limit,
        say) is not a flood: past two lines in `_SAY_EVERY` seconds the latest change is
        held back, and said (with how many were skipped) once the period is over."""
        now = time.monotonic()
        if now - self._said[0] < _SAY_EVERY:
            self._unsaid += 1
            self._held = (message, detail, event)
            return
        self._held = None
        if self._unsaid:
            message += f" ({self._unsaid} more changes in between)"
            self._unsaid = 0
        self._said = (self._said[1], now)
        store = redact_url(self.url)
        log.warning(message, store, detail, extra={"event": event, "store": store})

    def _say_held(self) -> None:
        if self._held is not None and time.monotonic() - self._said[0] >= _SAY_EVERY:
            message, detail, event = self._held
            self._unsaid -= 1  # the held one is said now
            self._say(message, detail, event=event)

    async def delete_keys(self, guards: Iterable[UpstreamGuard]) -> None:
        """Remove this store's keys for the upstreams of `guards` (tests, decommissioning)."""
        keys = [k for guard in guards for k in self.keys(guard)]
        if keys:
            await self.client.delete(*keys)


def _timed_out(exc: BaseException) -> bool:
    """A deadline passed (ours or redis-py's socket timeout), as opposed to a refusal."""
    from redis.exceptions import TimeoutError as RedisTimeout

    return isinstance(exc, (TimeoutError, RedisTimeout))
