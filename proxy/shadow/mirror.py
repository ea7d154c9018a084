"""The shadow side channel: per-route bounded queues and workers, off the client's path.

The handler serves the client from the primary, then calls `ShadowMirror.submit()` with the
request and the buffered primary response. `submit` only enqueues (or drops and counts); the
route's workers send the request to the candidate through the route's ACL, optionally to the
primary again for noise, compare, redact and hand a record to the diff store. Nothing here can
delay, fail or change the client's response.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.config.model import SAFE_METHODS, Route, ShadowPolicy

from .compare import Differ, Rules, decoded_body
from .memory import DEFAULT_MAX_MEMORY, Hold, ShadowMemory
from .model import CapturedResponse, Comparison, Difference, DiffRecord, ShadowRequest
from .redact import Redactor
from .store.base import DiffStore

log = logging.getLogger("strangler.shadow")

Send = Callable[[str, ShadowRequest], Awaitable[CapturedResponse]]
TranslateRequest = Callable[[Route, ShadowRequest], "ShadowRequest | Awaitable[ShadowRequest]"]
TranslateResponse = Callable[
    [Route, ShadowRequest, CapturedResponse], "CapturedResponse | Awaitable[CapturedResponse]"
]
Count = Callable[..., None]

SHADOW_HEADER = "x-strangler-shadow"
OFFLOAD_BYTES = 256 * 1024  # compare bigger bodies in a thread so the loop stays responsive
# Redacting a record's text costs about 0.2 ms per KiB of HTML naming a secret: records with
# bigger bodies are redacted in a thread too.
OFFLOAD_REDACT_BYTES = 16 * 1024
EXAMPLE_BODY_LIMIT = 64 * 1024
LATENCY_WINDOW = 1024

# Drop reasons, as the telemetry's `strangler_shadow_dropped_total{reason}` names them.
QUEUE_FULL, BODY_TOO_LARGE, UNSAFE_METHOD, STOPPING, CANDIDATE_DOWN, PROXY_BUSY = (
    "queue_full",
    "body_too_large",
    "unsafe_method",
    "stopping",
    "candidate_down",
    "proxy_busy",  # the queue is full because shadow work yields to a lagging event loop
)
# The bytes held for comparisons waiting or under way (`shadow.max_memory`) are all taken.
MEMORY_FULL = "memory_full"
# The handler's: the primary failed (no answer, or one cut short), or the client left
# before its answer was whole; either way there is nothing to compare.
PRIMARY_FAILED, CLIENT_GONE = "primary_failed", "client_gone"
# A candidate that refuses connections this many times in a row is not called for DOWN_FOR
# seconds (doubling while probes keep failing, up to DOWN_FOR_MAX): a failed connect costs the
# proxy more CPU than a whole successful call, and that CPU is the primary path's.
DOWN_AFTER = 5
DOWN_FOR = 1.0
DOWN_FOR_MAX = 30.0
# Shadow work yields to client traffic: every LAG_PROBE seconds the mirror measures how late the
# event loop runs a timer (smoothed). Above BUSY_LAG clients are waiting for the loop, so the
# workers wait too: queues fill and further shadow calls are dropped (`queue_full`) instead of
# taking the primary path's CPU. They resume once the lag is down to IDLE_LAG: without that
# margin, a saturated loop whose lag hovers around BUSY_LAG flaps, and every flap lets a
# burst of comparisons (each is two extra upstream calls, a diff and a store write) in.
LAG_PROBE = 0.02
BUSY_LAG = 0.002
IDLE_LAG = 0.0005


class TranslationFailed(Exception):
    """The route's ACL raised: recorded as an `error` difference naming the stage."""

    def __init__(self, stage: str, error: BaseException, response: CapturedResponse | None):
        super().__init__(f"ACL {stage} failed: {type(error).__name__}: {error}")
        self.stage = stage
        self.response = response


@dataclass(slots=True)
class _Job:
    route: Route
    endpoint: str
    request: ShadowRequest
    primary: CapturedResponse
    request_id: str
    ts: float
    hold: Hold  # the budget's bytes for `request.body` and `primary.body`, released when done


@dataclass(slots=True)
class _Lane:
    """One route's queue and workers. A reload that changes the limits starts a new lane;
    the old one drains and its workers exit."""

    name: str
    concurrency: int
    queue: asyncio.Queue
    workers: list[asyncio.Task] = field(default_factory=list)
    in_flight: int = 0
    # The route's `shadow` policy last found to fit this lane: while the route carries that
    # very object, the lane is current without comparing sizes (`ShadowMirror._current_lane`).
    policy: ShadowPolicy | None = None


@dataclass(slots=True)
class _Down:
    """A candidate upstream's consecutive connection failures and when it may be called again."""

    failures: int = 0
    until: float = 0.0  # monotonic
    cooldown: float = 0.0


def _unreachable(result: object) -> bool:
    """Refused, reset, unroutable: the candidate is not there. A timeout is not counted (a slow
    candidate is bounded by the lane's concurrency and queue instead)."""
    return isinstance(result, OSError) and not isinstance(result, TimeoutError)


@dataclass(slots=True)
class _Stats:
    submitted: int = 0
    sampled_out: int = 0
    enqueued: int = 0
    compared: int = 0
    results: Counter = field(default_factory=Counter)  # match|mismatch|noise|error
    dropped: Counter = field(default_factory=Counter)
    primary_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    candidate_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 1)))  # nearest rank, ceil(q * n)
    return round(ordered[min(rank, len(ordered)) - 1], 3)


class CandidateAnswered(Exception):
    """Raised by `translate_request` when the candidate's answer is known without calling it.

    The ACL rejects some input exactly as the monolith would (`RequestRejected`): that answer
    *is* the extracted side's answer, so it is compared, not recorded as an ACL error.
    """

    def __init__(self, response: CapturedResponse) -> None:
        super().__init__(f"answered locally with {response.status}")
        self.response = response


class ShadowMirror:
    """One per process: owns the per-route lanes, the compiled comparators and the store.

    `send(upstream_name, request)` does the HTTP (timeouts included) and returns the buffered
    response; `translate_request(route, request)` / `translate_response(route, original_request,
    response)` are the route's ACL (sync or async; `None` = identity). `translate_request` gets
    the legacy request (legacy `path`, `candidate_path` as the handler rewrote it) and returns
    one whose `candidate_path` (else `path`) is where the candidate is called, with the
    translated query, headers and body. `primary_upstream` is the legacy upstream
    (`Config.default`), used for `noise: primary-twice`.

    `max_memory` bounds the bytes of primary answers and request bodies held for comparisons
    in this process, on every route together (`shadow.max_memory`): captured while relayed
    (`hold()`), queued, and in flight. A comparison that does not fit is dropped
    (`memory_full`); its bytes, like those of every finished, failed or cancelled one, are
    given back.
    """

    def __init__(
        self,
        store: DiffStore,
        *,
        send: Send,
        translate_request: TranslateRequest | None = None,
        translate_response: TranslateResponse | None = None,
        primary_upstream: str = "legacy",
        redact: tuple[str, ...] | list[str] = (),
        timeout: float = 30.0,
        max_memory: int = DEFAULT_MAX_MEMORY,
        count: Count | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._send = send
        self._translate_request = translate_request
        self._translate_response = translate_response
        self.primary_upstream = primary_upstream
        self._redactor = Redactor(redact)
        self._timeout = timeout
        self._count = count
        self._rng = rng
        self._clock = clock
        self._monotonic = monotonic
        self._down: dict[str, _Down] = {}  # by candidate upstream name
        self._lanes: dict[str, _Lane] = {}
        self._retired: list[_Lane] = []
        self._differs: dict[str, tuple[object, Differ]] = {}
        self._stats: dict[str, _Stats] = {}
        self._closing = False
        self.memory = ShadowMemory(max_memory)
        self.loop_lag = 0.0  # seconds, EWMA of the event loop's lateness
        self._probe: asyncio.Task | None = None
        self._idle = asyncio.Event()  # set while the loop keeps up; workers wait on it
        self._idle.set()

    # ---- the request path -----------------------------------------------------------------

    def admit(self, route: Route, method: str, content_length: int | None) -> bool:
        """Before buffering the body: will this request be shadowed? Samples and counts.

        Call it first and pass `admitted=True` to `submit` so the handler only buffers
        request bodies it will actually shadow; `submit` alone also works.
        """
        try:
            return self._admit(route, method.upper(), content_length)
        except Exception:  # noqa: BLE001 - never fail the client's request
            log.exception("shadow admit failed on route %s", getattr(route, "name", "?"))
            return False

    def _admit(self, route: Route, method: str, content_length: int | None) -> bool:
        if route.mode != "shadow" or not route.target:
            return False
        stats = self._route_stats(route.name)
        policy = route.shadow
        if self._closing:
            return self.drop(route.name, STOPPING)
        if method not in SAFE_METHODS and policy.unsafe != "dry-run":
            return self.drop(route.name, UNSAFE_METHOD)
        if content_length is not None and content_length > policy.max_body:
            return self.drop(route.name, BODY_TOO_LARGE)
        if policy.sample < 1.0 and self._rng() >= policy.sample:
            stats.sampled_out += 1
            return False
        if self.candidate_down(route.target):
            return self.drop(route.name, CANDIDATE_DOWN)
        lane = self._current_lane(route)
        if lane is not None and lane.queue.full():  # spare the handler buffering for nothing
            return self.drop(route.name, PROXY_BUSY if self.busy else QUEUE_FULL)
        if not self.memory.room(content_length or 0):  # nor keeping an answer it cannot hold
            return self.drop(route.name, MEMORY_FULL)
        return True

    def hold(self) -> Hold:
        """An empty hold on the shadow memory budget, for the handler's `BodyCapture`: the
        primary's answer is counted as it is relayed, and the hold goes to `submit`."""
        return self.memory.hold()

    def submit(
        self,
        route: Route,
        endpoint: str,
        request: ShadowRequest,
        primary: CapturedResponse,
        request_id: str,
        *,
        admitted: bool = False,
        hold: Hold | None = None,
    ) -> bool:
        """Queue a shadow comparison. Never blocks, never raises; False = not shadowed (counted).

        Safety rules are checked again even when `admitted`: an unsafe method is never shadowed
        without `unsafe: dry-run`, and a body over `max_body` never is. The request's and the
        primary's bodies must fit in the memory budget (`memory_full` otherwise): `hold` is what
        is held for them already (the capture's), and is the mirror's from here on: released
        when the comparison is done or not made.
        """
        queued = False
        try:
            method = request.method.upper()
            if not admitted and not self._admit(route, method, len(request.body)):
                return False
            if admitted and route.mode != "shadow":
                return False
            stats = self._route_stats(route.name)
            stats.submitted += 1
            if self._closing:
                return self.drop(route.name, STOPPING)
            if method not in SAFE_METHODS and route.shadow.unsafe != "dry-run":
                return self.drop(route.name, UNSAFE_METHOD)
            if len(request.body) > route.shadow.max_body:
                return self.drop(route.name, BODY_TOO_LARGE)
            if self.candidate_down(route.target):
                return self.drop(route.name, CANDIDATE_DOWN)
            lane = self._lane(route)
            if lane.queue.full():
                return self.drop(route.name, PROXY_BUSY if self.busy else QUEUE_FULL)
            if hold is None:
                hold = self.memory.hold()
            if not hold.grow(max(0, len(primary.body) + len(request.body) - hold.size)):
                return self.drop(route.name, MEMORY_FULL)
            job = _Job(route, endpoint, request, primary, request_id, self._clock(), hold)
            lane.queue.put_nowait(job)
            queued = True
            stats.enqueued += 1
            return True
        except Exception:  # noqa: BLE001 - never fail the client's request
            log.exception("shadow submit failed on route %s", getattr(route, "name", "?"))
            return False
        finally:
            if not queued and hold is not None:
                hold.release()

    def drop(self, route_name: str, reason: str) -> bool:
        """Count a shadow call not made (also for the handler's own reasons, e.g. a chunked
        body that turned out larger than `max_body`), in the snapshot and in metrics."""
        self._route_stats(route_name).dropped[reason] += 1
        if self._count is not None:
            try:
                self._count("shadow_drop", route=route_name, reason=reason)
            except Exception:  # noqa: BLE001
                log.exception("shadow drop metric failed")
        return False

    def forget_candidates(self, names: Iterable[str]) -> None:
        """A reload redefined these upstreams: their past connection failures say nothing now."""
        for name in names:
            self._down.pop(name, None)

    def candidate_down(self, upstream: str | None) -> bool:
        """Is this candidate resting after repeated connection failures? (No call is made.)"""
        state = self._down.get(upstream or "")
        return state is not None and self._monotonic() < state.until

    def _candidate_result(self, upstream: str, result: object) -> None:
        """Track consecutive connection failures; any answer from the candidate resets them."""
        if isinstance(result, CapturedResponse) or (
            isinstance(result, TranslationFailed) and result.response is not None
        ):
            self._down.pop(upstream, None)
            return
        if not _unreachable(result):
            return
        state = self._down.setdefault(upstream, _Down())
        state.failures += 1
        now = self._monotonic()
        if state.failures >= DOWN_AFTER and now >= state.until:  # not already resting
            state.cooldown = min(max(state.cooldown * 2, DOWN_FOR), DOWN_FOR_MAX)
            state.until = now + state.cooldown
            log.warning(
                "shadow candidate %s unreachable %d times in a row (%s); not called for %gs",
                upstream,
                state.failures,
                result,
                state.cooldown,
            )

    def _route_stats(self, name: str) -> _Stats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = _Stats()
        return stats

    def _current_lane(self, route: Route) -> _Lane | None:
        """The route's lane, unless a reload changed its concurrency or queue (then the next
        `submit` starts a new one, and the old lane's full queue says nothing about it)."""
        lane = self._lanes.get(route.name)
        if lane is None:
            return None
        policy = route.shadow
        if lane.policy is policy:  # every request but the first after a (re)load
            return lane
        if lane.concurrency != max(1, int(policy.concurrency)):
            return None
        if lane.queue.maxsize != max(1, int(policy.queue)):
            return None
        lane.policy = policy
        return lane

    def _lane(self, route: Route) -> _Lane:
        policy = route.shadow
        concurrency = max(1, int(policy.concurrency))
        size = max(1, int(policy.queue))
        current = self._current_lane(route)
        if current is not None:
            return current
        lane = self._lanes.get(route.name)
        if lane is not None:
            self._retire(lane)
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._lag_probe())
        lane = _Lane(route.name, concurrency, asyncio.Queue(maxsize=size), policy=policy)
        lane.workers = [
            asyncio.get_running_loop().create_task(
                self._worker(lane), name=f"shadow-{route.name}-{i}"
            )
            for i in range(concurrency)
        ]
        self._lanes[route.name] = lane
        return lane

    def _retire(self, lane: _Lane) -> None:
        """Let an old lane finish what it queued; one sentinel per worker ends it."""
        self._retired.append(lane)
        for _ in lane.workers:
            asyncio.get_running_loop().create_task(lane.queue.put(None))

    # ---- the workers ----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Is the event loop running late (clients waiting)? Shadow workers wait meanwhile."""
        return not self._idle.is_set()

    async def _lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            due = loop.time() + LAG_PROBE
            await asyncio.sleep(LAG_PROBE)
            self.loop_lag = 0.7 * self.loop_lag + 0.3 * max(0.0, loop.time() - due)
            if self.loop_lag > BUSY_LAG:
                self._idle.clear()
            elif self.loop_lag < IDLE_LAG:
                self._idle.set()

    async def _worker(self, lane: _Lane) -> None:
        while True:
            job = await lane.queue.get()
            if job is None:
                return
            lane.in_flight += 1  # taken by a worker (perhaps still waiting for an idle loop)
            try:
                await self._idle.wait()
                await self._process(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad comparison must not stop the lane
                log.exception("shadow comparison failed on route %s", lane.name)
                self._route_stats(lane.name).results["error"] += 1
            finally:
                lane.in_flight -= 1
                job.hold.release()
                del job  # its bodies are not kept alive while this worker waits for the next

    def differ(self, route: Route) -> Differ:
        """The route's compiled rules, rebuilt when a reload changes its policy."""
        cached = self._differs.get(route.name)
        if cached is not None and cached[0] is route.shadow:
            return cached[1]
        differ = Differ(Rules.from_policy(route.shadow))
        self._differs[route.name] = (route.shadow, differ)
        return differ

    @staticmethod
    def _marked(request: ShadowRequest) -> ShadowRequest:
        """The request with `X-Strangler-Shadow: 1` and without the client's Host."""
        headers = tuple(
            (k, v) for k, v in request.headers if k.lower() not in (SHADOW_HEADER, "host")
        ) + ((SHADOW_HEADER, "1"),)
        return replace(request, headers=headers)

    async def _call(self, upstream: str, request: ShadowRequest) -> CapturedResponse:
        # Not wait_for: on Python 3.11 it can return a result that arrived as the worker was
        # cancelled (shutdown), and the cancellation is lost.
        async with asyncio.timeout(self._timeout):
            return await self._send(upstream, request)

    async def _process(self, job: _Job) -> None:
        route, request, primary = job.route, job.request, job.primary
        policy = route.shadow
        stats = self._route_stats(route.name)
        if self.candidate_down(route.target):  # queued before it went down
            self.drop(route.name, CANDIDATE_DOWN)
            return

        noise_up: str | None = None
        if policy.noise != "off" and request.method.upper() in SAFE_METHODS:
            noise_up = self.primary_upstream if policy.noise == "primary-twice" else policy.noise

        async def candidate() -> CapturedResponse:
            req = self._marked(request)
            if self._translate_request is not None:
                try:
                    req = await _maybe_await(self._translate_request(route, req))
                except CandidateAnswered as answered:
                    return answered.response
                except Exception as exc:  # noqa: BLE001 - an ACL bug is a finding, not a crash
                    raise TranslationFailed("translate_request", exc, None) from exc
            # the ACL sees the legacy path and says where to go in `candidate_path`
            target = replace(req, path=req.candidate_path or req.path, candidate_path=None)
            resp = await self._call(route.target or "", self._marked(target))
            if self._translate_response is not None:
                try:
                    resp = await _maybe_await(self._translate_response(route, request, resp))
                except Exception as exc:  # noqa: BLE001
                    raise TranslationFailed("translate_response", exc, resp) from exc
            return as_route_answers(route, resp)

        async def second_primary(upstream: str) -> CapturedResponse:
            # marked like every shadow call, so the monolith can tell it from client traffic
            return as_route_answers(route, await self._call(upstream, self._marked(request)))

        calls = [candidate()]
        if noise_up is not None:
            calls.append(second_primary(noise_up))
        results = await asyncio.gather(*calls, return_exceptions=True)
        cand = results[0]
        second = results[1] if len(results) > 1 else None
        for res in results:
            if isinstance(res, asyncio.CancelledError):
                raise res
        self._candidate_result(route.target or "", cand)

        differ = self.differ(route)
        noise: tuple[str, ...] | None = None
        if isinstance(second, CapturedResponse):
            noise_cmp = await self._compare(differ, primary, second)
            noise = tuple(sorted(noise_cmp.fields))

        if isinstance(cand, CapturedResponse):
            comparison = await self._compare(differ, primary, cand)
            result = (
                "match"
                if comparison.match
                else "noise"
                if noise is not None and comparison.fields <= set(noise)
                else "mismatch"
            )
            cand_status, cand_latency = cand.status, cand.latency
        else:
            reason = f"{type(cand).__name__}: {cand}".rstrip(": ")
            cand_status, cand_latency = None, None
            if isinstance(cand, TimeoutError):
                reason = f"no answer within {self._timeout:g}s"
            elif isinstance(cand, TranslationFailed):
                reason = str(cand)
                if cand.response is not None:
                    cand_status, cand_latency = cand.response.status, cand.response.latency
            comparison = Comparison(
                (Difference("status", "status", "error", primary.status, reason),), "error"
            )
            result = "error"

        args = (job, comparison, cand, cand_status, cand_latency, noise)
        size = len(job.primary.body) + (len(cand.body) if isinstance(cand, CapturedResponse) else 0)
        if comparison.differences and size > OFFLOAD_REDACT_BYTES:
            record = await asyncio.get_running_loop().run_in_executor(None, self._record, *args)
        else:
            record = self._record(*args)

        stats.compared += 1
        stats.results[result] += 1
        stats.primary_ms.append(primary.latency * 1000)
        if cand_latency is not None:
            stats.candidate_ms.append(cand_latency * 1000)
        if self._count is not None:
            try:
                self._count("shadow_comparison", route=route.name, result=result)
            except Exception:  # noqa: BLE001
                log.exception("shadow comparison metric failed")
        self.store.add(record)

    async def _compare(
        self, differ: Differ, primary: CapturedResponse, other: CapturedResponse
    ) -> Comparison:
        if len(primary.body) + len(other.body) > OFFLOAD_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                None, differ.compare, primary, other
            )
        return differ.compare(primary, other)

    def _record(
        self,
        job: _Job,
        comparison: Comparison,
        cand: Any,
        cand_status: int | None,
        cand_latency: float | None,
        noise: tuple[str, ...] | None,
    ) -> DiffRecord:
        r = self._redactor
        primary_body = candidate_body = None
        if comparison.differences and comparison.body_kind in ("json", "text"):
            primary_body = r.body(_plain(job.primary), comparison.body_kind, EXAMPLE_BODY_LIMIT)
            if isinstance(cand, CapturedResponse):
                candidate_body = r.body(_plain(cand), comparison.body_kind, EXAMPLE_BODY_LIMIT)
        return DiffRecord(
            ts=job.ts,
            route=job.route.name,
            method=job.request.method.upper(),
            endpoint=r.endpoint(job.endpoint),
            request_id=job.request_id,
            primary_status=job.primary.status,
            candidate_status=cand_status,
            primary_latency=job.primary.latency,
            candidate_latency=cand_latency,
            differences=tuple(r.difference(d) for d in comparison.differences),
            noise=None if noise is None else tuple(sorted({r.path(f) for f in noise})),
            body_kind=comparison.body_kind,
            primary_body=primary_body,
            candidate_body=candidate_body,
        )

    # ---- introspection and shutdown -------------------------------------------------------

    def set_redact(self, names: tuple[str, ...] | list[str]) -> None:
        """Redact these names (`telemetry.redact`) from what is stored from now on: a hot
        reload that adds a secret's name must reach the store as it reaches the logs."""
        self._redactor = Redactor(names)

    def snapshot(self) -> dict[str, Any]:
        """Live figures for `GET /-/shadow` (this process only; the store has the history)."""
        routes = []
        for name in sorted(self._stats):
            s = self._stats[name]
            lane = self._lanes.get(name)
            p_ms, c_ms = list(s.primary_ms), list(s.candidate_ms)
            matched = s.results["match"] + s.results["noise"]
            routes.append(
                {
                    "route": name,
                    "submitted": s.submitted,
                    "sampled_out": s.sampled_out,
                    "enqueued": s.enqueued,
                    "compared": s.compared,
                    "results": dict(s.results),
                    "match_rate": round(matched / s.compared, 4) if s.compared else None,
                    "dropped": dict(s.dropped),
                    "queued": lane.queue.qsize() if lane else 0,
                    "queue_limit": lane.queue.maxsize if lane else None,
                    "in_flight": lane.in_flight if lane else 0,
                    "concurrency": lane.concurrency if lane else None,
                    "latency_ms": {
                        "primary": {q: _percentile(p_ms, v) for q, v in _QS},
                        "candidate": {q: _percentile(c_ms, v) for q, v in _QS},
                    },
                }
            )
        return {
            "routes": routes,
            "store": self.store.stats(),
            "closing": self._closing,
            "memory": self.memory.snapshot(),
            "loop": {
                "lag_ms": round(self.loop_lag * 1000, 3),
                "busy": self.busy,
            },
        }

    async def close(self, timeout: float = 5.0, *, close_store: bool = False) -> None:
        """Stop taking work, give queued comparisons `timeout` seconds, then cancel the rest
        and flush the store."""
        self._closing = True
        if self._probe is not None:
            self._probe.cancel()
        self._idle.set()  # workers finish their queues now, busy or not
        lanes = list(self._lanes.values()) + self._retired
        for lane in lanes:
            for _ in lane.workers:
                try:
                    lane.queue.put_nowait(None)
                except asyncio.QueueFull:
                    pass
        workers = [w for lane in lanes for w in lane.workers]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for lane in lanes:
            while not lane.queue.empty():
                job = lane.queue.get_nowait()
                if job is not None:
                    job.hold.release()
                    self.drop(lane.name, STOPPING)
        self._lanes.clear()
        self._retired.clear()
        loop = asyncio.get_running_loop()
        if close_store:
            await loop.run_in_executor(None, self.store.close)
        else:
            await loop.run_in_executor(None, self.store.flush)


_QS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def _plain(resp: CapturedResponse) -> bytes:
    body, err = decoded_body(resp)
    return b"" if err else body


def as_route_answers(route: Route, resp: CapturedResponse) -> CapturedResponse:
    """A shadow answer with the route's `response_headers` applied, as the primary's answer
    already has them: what clients would see on either side is what is compared."""
    if not route.response_headers:
        return resp
    names = {name.lower() for name, _ in route.response_headers}
    kept = tuple((k, v) for k, v in resp.headers if k.lower() not in names)
    added = tuple((n.lower(), v) for n, v in route.response_headers if v is not None)
    return replace(resp, headers=kept + added)
