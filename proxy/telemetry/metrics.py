"""Prometheus metrics with labels that stay few by construction.

Labels only ever hold names from routes.yaml (routes, upstreams), a fixed set of methods,
status classes and the handful of result/reason words the proxy itself emits — never raw
paths, ids or client input — so a scan of random URLs cannot blow up the series count.

The request path pays one dict lookup plus an `inc`/`observe`: the label children for a
(route, mode, side, method, status class) combination are bound on first use and cached;
`rebind()` drops the cache when a reload changes the route table.

With `--workers N` the figures of all workers are served together using prometheus-client's
multiprocess mode: the master calls `prepare_multiprocess_dir()` before forking (and
`mark_worker_dead(pid)` when a worker exits); each worker builds its `Metrics` after the fork;
whichever process answers GET /metrics merges every worker's files.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import mmap
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    mmap_dict,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
OTHER_METHOD = "OTHER"
DEFAULT_ROUTE = "default"  # requests that matched no route and went to `default`
SIDES: tuple[str, ...] = ("legacy", "extracted")

# Proxy overhead is sub-millisecond, upstreams are tens of ms, timeouts are up to 60 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

BREAKER_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}

_STATUS_CLASSES = tuple(f"{i}xx" for i in range(10))


def method_label(method: str) -> str:
    """The method as a label: one of `METHODS`, anything else is "OTHER"."""
    return method if method in METHODS else OTHER_METHOD


def status_class(status: int) -> str:
    """`503` -> "5xx". A status outside 100..599 (no response at all) is "0xx"."""
    return _STATUS_CLASSES[status // 100] if 100 <= status < 600 else "0xx"


@dataclass(frozen=True, slots=True)
class Event:
    """A counter the proxy's components bump through `Metrics.count(name, **labels)`."""

    metric: str
    help: str
    labels: tuple[str, ...]


# name -> counter. Label values are names from the config or fixed words (see docs/operations.md).
EVENTS: dict[str, Event] = {
    "upstream_attempt": Event(
        "strangler_upstream_attempts_total",
        "Requests sent to an upstream (each retry and fallback is one attempt), by result: "
        "ok, http_5xx, timeout, connect_error, error.",
        ("upstream", "result"),
    ),
    "retry": Event(
        "strangler_upstream_retries_total",
        "Retries sent to an upstream, by what the previous attempt got (http_5xx, timeout, "
        "connect_error, error).",
        ("upstream", "reason"),
    ),
    "retry_budget_exhausted": Event(
        "strangler_retry_budget_exhausted_total",
        "Retries not sent because the upstream's retry budget was used up.",
        ("upstream",),
    ),
    "fallback": Event(
        "strangler_fallbacks_total",
        "Requests for an extracted route answered by legacy instead, by reason "
        "(breaker_open, bulkhead_full, retry_budget, http_5xx, timeout, connect_error, error).",
        ("route", "reason"),
    ),
    "breaker_transition": Event(
        "strangler_breaker_transitions_total",
        "Circuit breaker state changes (closed, open, half_open).",
        ("upstream", "from_state", "to_state"),
    ),
    "rejection": Event(
        "strangler_upstream_rejections_total",
        "Requests not sent to an upstream by its guard, by reason: breaker_open, bulkhead_full "
        "(concurrency limit and queue full, or the queue wait timed out), retry_budget.",
        ("upstream", "reason"),
    ),
    "shadow_comparison": Event(
        "strangler_shadow_comparisons_total",
        "Shadow responses compared with the primary, by result: match, mismatch, noise "
        "(differences the primary also shows against itself), error (candidate failed).",
        ("route", "result"),
    ),
    "shadow_drop": Event(
        "strangler_shadow_dropped_total",
        "Shadow calls not made, by reason (queue_full, proxy_busy, memory_full, "
        "primary_too_large, unauthenticated, candidate_down, body_too_large, unsafe_method, "
        "stopping, primary_failed, client_gone).",
        ("route", "reason"),
    ),
    "rate_limit_local": Event(
        "strangler_rate_limit_local_total",
        "Requests on a route with a shared rate limit counted by this process alone, Redis not "
        "answering in time (or down): the fleet may pass a few more than the budget.",
        ("route",),
    ),
    "config_reload": Event(
        "strangler_config_reloads_total",
        "routes.yaml reloads, by result (ok, failed).",
        ("result",),
    ),
}


def multiprocess_dir() -> str | None:
    """The shared metrics directory when running with several workers, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class _AllocatedMmapedDict(mmap_dict.MmapedDict):
    """prometheus-client's metrics file, with its disk blocks allocated before they are
    written through the mapping.

    Its files are sparse (`truncate`), and a write through a mapping to a page the file
    system cannot find room for is not an error but SIGBUS: with the directory full (a
    small tmpfs), every worker died at its first request, was restarted and died again,
    with nothing said. `posix_fallocate` makes that an OSError; then this process keeps its
    figures in memory (they leave /metrics, requests are served) and says so once."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            try:
                with open(filename, "a+b") as f:
                    if os.fstat(f.fileno()).st_size == 0:
                        os.posix_fallocate(f.fileno(), 0, mmap_dict._INITIAL_MMAP_SIZE)
            except OSError as exc:
                _metrics_file_failed(filename, exc)
                with contextlib.suppress(OSError):
                    if os.path.getsize(filename) == 0:  # an empty file breaks the scrape
                        os.unlink(filename)
                self._f = None
                self._fname = None  # in memory
                self._capacity = mmap_dict._INITIAL_MMAP_SIZE
                self._m = mmap.mmap(-1, self._capacity)
                self._positions: dict[str, int] = {}
                self._used = 8
                mmap_dict._pack_integer(self._m, 0, self._used)
                return
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        need = self._used + len(key.encode("utf-8")) + 32  # an entry, its padding included
        if need > self._capacity:
            capacity = self._capacity
            while need > capacity:
                capacity *= 2
            if self._fname is not None:
                try:
                    os.posix_fallocate(self._f.fileno(), 0, capacity)
                except OSError as exc:
                    _metrics_file_failed(self._fname, exc)
                    self._to_memory()
            if self._fname is None:
                grown = mmap.mmap(-1, capacity)
                grown[: self._used] = self._m[: self._used]
                self._m = grown
                self._capacity = capacity
        super()._init_value(key)

    def _to_memory(self) -> None:
        """Go on in anonymous memory: still counted, no longer exported."""
        copy = mmap.mmap(-1, self._capacity)
        copy[: self._used] = self._m[: self._used]
        self._m.close()
        self._f.close()
        self._m, self._f, self._fname = copy, None, None


_FULL_WARNED = False


def _metrics_file_failed(filename: str, exc: OSError) -> None:
    global _FULL_WARNED
    if _FULL_WARNED:
        return
    _FULL_WARNED = True
    logging.getLogger("strangler").error(
        "metrics file %s cannot grow (%s): this worker's figures are no longer in /metrics, "
        "requests are still served; make room in %s=%s (a tmpfs of a few MiB) and restart",
        filename,
        exc.strerror or exc,
        MULTIPROC_ENV,
        os.path.dirname(filename),
    )


def _use_multiprocess_values() -> None:
    # prometheus-client picks its value class when it is first imported; if that happened before
    # the master set the directory, switch now (before any metric of ours is built).
    values.MmapedDict = _AllocatedMmapedDict  # type: ignore[misc]
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Master, before forking workers: create/empty the shared directory and export it.

    Returns the directory. Stale files from an earlier run would be added to the new figures,
    so every `*.db` in it is removed.
    """
    path = path or tempfile.mkdtemp(prefix="strangler-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    _use_multiprocess_values()
    return path


def mark_worker_dead(pid: int) -> None:
    """Master, when a worker exits: drop its live gauges (in-flight, breaker state)."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)


def remove_multiprocess_dir(path: str) -> None:
    """Master, on shutdown, for a directory `prepare_multiprocess_dir` created."""
    shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """All of the proxy's metrics in one registry; one instance per process."""

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir:
            _use_multiprocess_values()
        # `_created` series double the exposition and no dashboard uses them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "strangler_requests_total",
            "Requests answered by the proxy, by route, mode, side that answered, method and "
            "status class.",
            ("route", "mode", "side", "method", "status_class"),
            registry=r,
        )
        self.duration = Histogram(
            "strangler_request_duration_seconds",
            "Time from request received to response sent, by route and side.",
            ("route", "side"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "strangler_requests_in_flight",
            "Requests being handled right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.breaker_state = Gauge(
            "strangler_breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open "
            "(with several workers: the worst worker).",
            ("upstream",),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.config_version = Gauge(
            "strangler_config_version",
            "The `version` of the routes.yaml in use.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.counters: dict[str, Counter] = {
            name: Counter(ev.metric.removesuffix("_total"), ev.help, ev.labels, registry=r)
            for name, ev in EVENTS.items()
        }
        self._request_children: dict[tuple[str, str, str, str, str], tuple] = {}
        self._event_children: dict[tuple, object] = {}
        # One process that answers its own scrapes tallies in plain dicts and hands the
        # sums to prometheus-client when read: its lock, bucket loop and value objects cost
        # about 3 µs per request (profiled). Workers sharing files (multiprocess) write
        # through, so that whichever worker is scraped sees every other one exactly.
        self._defer = not self.multiprocess_dir
        self._pending: dict[tuple, list] = {}  # key -> [count, sum, per-bucket counts]
        self._pending_events: dict[tuple, float] = {}
        self._open = 0
        # The server's own count of requests in flight, read when the gauge is (scrape
        # time, and `publish_in_flight`): nothing per request. Without one, `started` and
        # `finished` keep the gauge.
        self.in_flight_source: Callable[[], int] | None = None
        self._in_flight_inc = self.in_flight.inc
        self._in_flight_dec = self.in_flight.dec

    def rebind(self) -> None:
        """Forget the cached label children (after a reload renamed routes or modes)."""
        self._request_children = {}

    def started(self) -> None:
        self._open += 1
        self._in_flight_inc()

    def finished(
        self,
        route: str,
        mode: str,
        side: str,
        method: str,
        status: int,
        duration_s: float,
    ) -> None:
        """Record one answered request. The hot path: a dict lookup, two increments."""
        key = (route, mode, side, method, status)
        if self._defer:
            tally = self._pending.get(key)
            if tally is None:
                tally = self._pending[key] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
            tally[0] += 1
            tally[1] += duration_s
            tally[2][bisect_left(LATENCY_BUCKETS, duration_s)] += 1
            if self._open:
                self._open -= 1
                self._in_flight_dec()
            return
        children = self._children(key)
        children[0].inc()
        children[1].observe(duration_s)
        if self._open:  # only requests announced through `started` are in flight
            self._open -= 1
            self._in_flight_dec()

    def _children(self, key: tuple[str, str, str, str, int]) -> tuple:
        route, mode, side, method, status = key
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, mode, side, method_label(method), status_class(status)),
                self.duration.labels(route, side),
            )
            if len(self._request_children) < 100_000:  # bounded even for odd statuses
                self._request_children[key] = children
        return children

    def publish_in_flight(self) -> None:
        """Set the in-flight gauge from `in_flight_source` (other workers' scrapes read
        this process's value from its file: refreshed periodically in multiprocess mode)."""
        if self.in_flight_source is not None:
            self.in_flight.set(self.in_flight_source())

    def flush(self) -> None:
        """Hand the tallies to prometheus-client (before every read of the registry)."""
        self.publish_in_flight()
        pending, self._pending = self._pending, {}
        for key, (count, total, buckets) in pending.items():
            counter, histogram = self._children(key)
            counter.inc(count)
            # What `observe` would have done value by value: the same bucket rule
            # (value <= upper bound) and sum, added in one go.
            histogram._sum.inc(total)  # noqa: SLF001
            for bucket, n in zip(histogram._buckets, buckets, strict=True):  # noqa: SLF001
                if n:
                    bucket.inc(n)
        events, self._pending_events = self._pending_events, {}
        for (name, *labels), amount in events.items():
            self._event(name, dict(labels)).inc(amount)

    def count(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        """Bump the event counter `name` (see `EVENTS`) with exactly its labels."""
        key = (name, *labels.items())
        if self._defer:
            if key not in self._pending_events:
                self._event(name, labels)  # unknown names and labels fail here, at once
                self._pending_events[key] = amount
            else:
                self._pending_events[key] += amount
            return
        self._event(name, labels).inc(amount)

    def _event(self, name: str, labels: dict[str, str]):
        key = (name, *labels.items())
        child = self._event_children.get(key)
        if child is None:
            child = self._event_child(name, labels)
            self._event_children[key] = child
        return child

    def _event_child(self, name: str, labels: dict[str, str]):
        event = EVENTS.get(name)
        if event is None:
            raise KeyError(
                f"unknown telemetry event {name!r}; known events: {', '.join(sorted(EVENTS))} "
                "(add new ones to proxy/telemetry/metrics.py EVENTS)"
            )
        if set(labels) != set(event.labels):
            raise ValueError(
                f"telemetry event {name!r} takes labels {list(event.labels)}, got {sorted(labels)}"
            )
        return self.counters[name].labels(**{k: str(labels[k]) for k in event.labels})

    def set_breaker_state(self, upstream: str, state: str) -> None:
        """Publish a breaker's current state ("closed", "half_open", "open")."""
        self.breaker_state.labels(upstream).set(BREAKER_STATES[state])

    def set_config_version(self, version: int) -> None:
        self.config_version.set(version)

    def _collector_registry(self) -> CollectorRegistry:
        if not self.multiprocess_dir:
            return self.registry
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
        return merged

    def text(self) -> bytes:
        """The Prometheus exposition of this process, or of all workers when multiprocess."""
        self.flush()
        return generate_latest(self._collector_registry())

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every current sample as plain data (name, labels, value), merged across workers."""
        self.flush()
        for family in self._collector_registry().collect():
            for sample in family.samples:
                yield sample.name, sample.labels, sample.value


def samples_from_text(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    """Parse a Prometheus exposition back into plain samples (for tools and tests)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), sample.value
