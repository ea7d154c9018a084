"""Where finished spans go: OTLP/HTTP from a small background thread, or an SDK exporter.

`OtlpHttpExport` is the production path. A span is encoded when it ends (on the event loop,
a few µs, see `proxy.telemetry.otlp`) and its bytes queued; a daemon thread wakes every
`schedule delay` or when a batch is full, joins the bytes into one request and POSTs it with
`http.client`. The thread does no Python-heavy work, so it hardly competes with the event loop
for the GIL. Spans are expendable: a full queue or a failed POST drops them (counted in
`dropped`), never the request.

`SdkExport` hands spans to an OpenTelemetry SDK `SpanExporter` as SDK `ReadableSpan`s: the
`console` exporter and tests (an `InMemorySpanExporter`) use it.

Standard variables are honoured when `telemetry.traces.endpoint` is not set:
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, *_HEADERS, *_COMPRESSION
(gzip), *_CERTIFICATE, and OTEL_BSP_SCHEDULE_DELAY / OTEL_BSP_MAX_EXPORT_BATCH_SIZE /
OTEL_BSP_MAX_QUEUE_SIZE for batching.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from proxy.config.values import redact_url
from proxy.telemetry import otlp
from proxy.telemetry.spans import KIND_CLIENT, KIND_SERVER, AttrValue, RecordedSpan

log = logging.getLogger("strangler.telemetry")

SCOPE = "strangler.proxy"
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
RETRYABLE = frozenset({429, 502, 503, 504})


def _env(name: str) -> str | None:
    """OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    return os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{name}"
    )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", name, raw, default)
        return default


def resolve_endpoint(endpoint: str | None) -> str:
    """The URL to POST to: `endpoint` (with /v1/traces added when it has no path), else the
    standard variables (the generic one gets /v1/traces appended, as the spec says)."""
    if endpoint:
        endpoint = endpoint.rstrip("/")
        return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"
    specific = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if specific:
        return specific
    generic = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if generic:
        return generic.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def parse_headers(raw: str | None) -> dict[str, str]:
    """`k1=v1,k2=v2` (values percent-encoded) as in OTEL_EXPORTER_OTLP_HEADERS."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            headers[unquote(name.strip())] = unquote(value.strip())
    return headers


class OtlpHttpExport:
    """The span sink for `exporter: otlp`: call it with each finished span."""

    def __init__(
        self,
        endpoint: str | None,
        resource: Mapping[str, AttrValue],
        *,
        schedule_delay: float | None = None,
        batch_size: int | None = None,
        max_queue: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = redact_url(resolve_endpoint(endpoint))  # as shown in messages
        parts = urlsplit(resolve_endpoint(endpoint))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"telemetry.traces.endpoint: {self.url!r} is not an http(s) URL; "
                "use e.g. http://otel-collector:4318"
            )
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/v1/traces") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/x-protobuf", **parse_headers(_env("HEADERS"))}
        if parts.username is not None and not any(
            k.lower() == "authorization" for k in self._headers
        ):  # an endpoint's `user:password@` is what a collector expects as Basic auth
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self._gzip = (_env("COMPRESSION") or "").lower() == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._cafile = _env("CERTIFICATE")
        self._timeout = timeout
        delay_ms = _env_int("OTEL_BSP_SCHEDULE_DELAY", 2000)
        self.schedule_delay = schedule_delay if schedule_delay is not None else delay_ms / 1000
        self.batch_size = max(1, batch_size or _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
        self.max_queue = max(
            self.batch_size, max_queue or _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        )
        self._header = otlp.resource_header(resource, SCOPE)
        self._queue: deque[bytes] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._conn: http.client.HTTPConnection | None = None
        self.exported = 0
        self.dropped = 0
        self._failures_logged = 0
        self._logged_at = 0.0
        self._thread: threading.Thread | None = None  # started with the first span

    # -- the event loop side -------------------------------------------------------------------

    def __call__(self, span: RecordedSpan) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopping:
            self.dropped += 1
            return
        queue.append(otlp.encode_span(span))
        if len(queue) == self.batch_size:
            self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="strangler-otlp", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 3.0) -> None:
        """Send what is queued and stop, waiting at most `timeout` s (0: do not wait)."""
        self._stopping = True
        self._wake.set()
        if timeout > 0 and self._thread is not None:
            self._thread.join(timeout)

    # -- the exporter thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            stopping = self._stopping
            while self._queue:
                batch = []
                for _ in range(min(self.batch_size, len(self._queue))):
                    batch.append(self._queue.popleft())
                self._send(otlp.request(self._header, batch), len(batch), retry=not stopping)
            if stopping:
                if self._conn is not None:
                    self._conn.close()
                return

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                context = ssl.create_default_context(cafile=self._cafile)
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._conn

    def _send(self, body: bytes, count: int, *, retry: bool) -> None:
        if self._gzip:
            body = gzip.compress(body, compresslevel=5)
        for attempt in (0, 1):
            problem = None
            try:
                conn = self._connection()
                conn.request("POST", self._path, body, self._headers)
                response = conn.getresponse()
                response.read()
                if 200 <= response.status < 300:
                    self.exported += count
                    return
                problem = f"HTTP {response.status}"
                if response.status not in RETRYABLE:
                    break
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
            if not retry or attempt:
                break
            time.sleep(0.5)  # on the exporter thread: one pause before the single retry
        self.dropped += count
        # A down collector must not flood the log, nor fall silent for a long outage: the
        # first five failures, then one line a minute with the running total.
        now = time.monotonic()
        if self._failures_logged < 5 or now - self._logged_at >= 60.0:
            self._failures_logged += 1
            self._logged_at = now
            log.warning(
                "trace export to %s failed (%s); %d spans dropped (%d since start)",
                self.url,
                problem,
                count,
                self.dropped,
            )


class SdkExport:
    """The span sink for an OpenTelemetry SDK span processor (console, tests)."""

    def __init__(self, processor: SpanProcessor, resource: Mapping[str, AttrValue]) -> None:
        self.processor = processor
        self.resource = Resource.create(dict(resource))
        self.scope = InstrumentationScope(SCOPE)

    def __call__(self, span: RecordedSpan) -> None:
        self.processor.on_end(self.readable(span))

    def readable(self, span: RecordedSpan) -> ReadableSpan:
        """The SDK's view of `span`, as SDK exporters expect it."""
        state = TraceState.from_header([span.trace_state]) if span.trace_state else None
        sampled = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(
            span.trace_id, span.span_id, is_remote=False, trace_flags=sampled, trace_state=state
        )
        parent = None
        if span.parent_id:
            parent = SpanContext(
                span.trace_id, span.parent_id, is_remote=span.remote_parent, trace_flags=sampled
            )
        status = Status(StatusCode(span.status_code), span.status_message or None)
        return ReadableSpan(
            name=span.name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=dict(span.attributes),
            events=[Event(name, attrs, at) for name, at, attrs in span.events or ()],
            kind={KIND_SERVER: SpanKind.SERVER, KIND_CLIENT: SpanKind.CLIENT}[span.kind],
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self.scope,
        )

    def shutdown(self, timeout: float = 3.0) -> None:
        self.processor.shutdown()
