"""OpenTelemetry spans for the proxy: one server span per request, one client span per attempt.

Spans are passed explicitly (no contextvars, no global provider): the request path hands the
server span to each attempt, which keeps asyncio tasks (shadow calls) from inheriting the wrong
parent and lets several `Tracing` objects live in one test process.

With `exporter: none` nothing is created at all: every method returns `None` or does nothing,
and the client's `traceparent`/`tracestate` travel upstream untouched with the other headers.
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from proxy.config.model import TracesConfig
from proxy.telemetry.redact import Redactor

EXPORTERS = ("otlp", "console", "none")
# Methods the HTTP semantic conventions know; others are reported as "_OTHER".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})[ \t]*")
_MAX_TRACESTATE = 512
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value, case-insensitively, from a CIMultiDict or a plain dict."""
    value = headers.get(name)
    if value is not None or type(headers) is not dict:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context in a W3C `traceparent`, or None when absent or malformed."""
    if not value or len(value) > 512:
        return None
    m = _TRACEPARENT.fullmatch(value)
    if not m or m.group(1) == "ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m.group(4), 16))
    )


def trace_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """The caller's trace id (for log lines) without creating any span."""
    value = header(headers, "traceparent")
    if not value:
        return None
    m = _TRACEPARENT.fullmatch(value)
    return m.group(2) if m and m.group(2) != "0" * 32 else None


def set_header(headers: MutableMapping[str, str], name: str, value: str) -> None:
    """Set `name` replacing any differently-cased copy (plain dicts are case-sensitive)."""
    if type(headers) is dict:
        for key in [k for k in headers if k.lower() == name and k != name]:
            del headers[key]
    headers[name] = value


def _unsampled(trace_id: int, trace_state: TraceState | None) -> Span:
    """A span that records nothing but propagates `trace_id` with a fresh span id, unsampled."""
    return NonRecordingSpan(
        SpanContext(
            trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(0),
            trace_state=trace_state,
        )
    )


def _format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def _otlp_endpoint(endpoint: str | None) -> str | None:
    if not endpoint:
        return None  # the exporter's default / OTEL_EXPORTER_OTLP_* environment
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def validate(config: TracesConfig) -> None:
    """Raise with the field path when `telemetry.traces` cannot be used."""
    if config.exporter not in EXPORTERS:
        raise ValueError(
            f"telemetry.traces.exporter: unknown exporter {config.exporter!r}; "
            f"use one of {', '.join(EXPORTERS)}"
        )
    if not 0.0 <= config.sample <= 1.0:
        raise ValueError(
            f"telemetry.traces.sample: {config.sample!r} is not a fraction; use 0.0..1.0 "
            "(0.1 = one request in ten)"
        )


class Tracing:
    """Creates and exports spans; `enabled` is False (and everything a no-op) for `none`."""

    def __init__(
        self,
        config: TracesConfig,
        *,
        service_name: str = "strangler",
        exporter: SpanExporter | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        validate(config)
        self.config = config
        self.redactor = redactor or Redactor()
        self.enabled = config.exporter != "none"
        self.provider: TracerProvider | None = None
        if not self.enabled:
            self._tracer = None
            return
        resource = Resource.create(
            {
                "service.name": service_name,
                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            }
        )
        self.provider = TracerProvider(
            # The sampling decision is taken in `start_server_span` before the SDK is involved
            # (parent-based, else `sample`); whatever reaches the SDK is to be recorded.
            resource=resource,
            sampler=ALWAYS_ON,
        )
        if exporter is not None:  # tests: export synchronously to this exporter instead
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif config.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = _otlp_endpoint(config.endpoint)
            otlp = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
        else:
            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        self._tracer = self.provider.get_tracer("strangler.proxy")

    # -- server side ---------------------------------------------------------------------------

    def start_server_span(
        self,
        headers: Mapping[str, str],
        method: str,
        path: str,
        *,
        route: str | None = None,
        http_route: str | None = None,
        scheme: str = "http",
        server_address: str | None = None,
        server_port: int | None = None,
        client_address: str | None = None,
    ) -> Span | None:
        """The span for one proxied request, child of the client's `traceparent` if any.

        Sampling follows the client's sampled flag when it sent a traceparent, else `sample`.
        An unsampled request gets a bare span context (no SDK work at all) that still carries
        the trace id upstream with the sampled flag off.
        """
        tracer = self._tracer
        if tracer is None:
            return None
        parent_ctx = parse_traceparent(header(headers, "traceparent"))
        context: Context | None = None
        if parent_ctx is not None:
            state = header(headers, "tracestate")
            if state and len(state) <= _MAX_TRACESTATE:
                parent_ctx = SpanContext(
                    parent_ctx.trace_id,
                    parent_ctx.span_id,
                    is_remote=True,
                    trace_flags=parent_ctx.trace_flags,
                    trace_state=TraceState.from_header([state]),
                )
            if not parent_ctx.trace_flags.sampled:
                return _unsampled(parent_ctx.trace_id, parent_ctx.trace_state)
            context = set_span_in_context(NonRecordingSpan(parent_ctx))
        elif self.config.sample < 1.0 and random.random() >= self.config.sample:
            return _unsampled(random.getrandbits(128) or 1, None)
        # Past this point the span is recorded: attributes go in at creation (one copy).
        known = method in KNOWN_METHODS
        shown = method if known else "HTTP"
        name = f"{shown} {http_route}" if http_route else shown
        attrs: dict[str, str | int] = {
            "http.request.method": method if known else "_OTHER",
            "url.path": path,
            "url.scheme": scheme,
        }
        if not known:
            attrs["http.request.method_original"] = method[:32]
        if http_route:
            attrs["http.route"] = http_route
        if route:
            attrs["strangler.route"] = route
        if server_address:
            attrs["server.address"] = server_address
        if server_port:
            attrs["server.port"] = server_port
        if client_address:
            attrs["client.address"] = client_address
        return tracer.start_span(name, context=context, kind=SpanKind.SERVER, attributes=attrs)

    def end_server_span(
        self,
        span: Span | None,
        status: int,
        *,
        mode: str | None = None,
        side: str | None = None,
        upstream: str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """Record the outcome; 5xx (or an exception) marks the span as an error."""
        if span is None:
            return
        if span.is_recording():
            attrs: dict[str, str | int] = {"http.response.status_code": status}
            for key, value in (
                ("strangler.mode", mode),
                ("strangler.side", side),
                ("strangler.upstream", upstream),
                ("strangler.tenant", tenant),
                ("strangler.request_id", request_id),
            ):
                if value is not None:
                    attrs[key] = value
            span.set_attributes(attrs)
            self._set_error(span, status, error, client=False)
        span.end()

    # -- client side ---------------------------------------------------------------------------

    def start_client_span(
        self,
        parent: Span | None,
        method: str,
        url: str,
        *,
        upstream: str,
        attempt: int = 0,
        fallback: bool = False,
        shadow: bool = False,
        remote: bool = False,
    ) -> Span | None:
        """A span for one attempt to an upstream (retries, fallbacks and shadow calls each get
        their own), child of the request's server span so all share its trace id."""
        tracer = self._tracer
        if tracer is None or parent is None:
            return None
        if not remote and not parent.is_recording():
            ctx = parent.get_span_context()
            return _unsampled(ctx.trace_id, ctx.trace_state)
        name = f"shadow {method}" if shadow else method
        parts = urlsplit(url)
        attrs: dict[str, str | int | bool] = {
            "http.request.method": method if method in KNOWN_METHODS else "_OTHER",
            "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "server.address": parts.hostname or "",
            "peer.service": upstream,
            "strangler.upstream": upstream,
        }
        if parts.port:
            attrs["server.port"] = parts.port
        if attempt:
            attrs["http.request.resend_count"] = attempt
        if fallback:
            attrs["strangler.fallback"] = True
        if shadow:
            attrs["strangler.shadow"] = True
        return tracer.start_span(
            name, context=set_span_in_context(parent), kind=SpanKind.CLIENT, attributes=attrs
        )

    def start_remote_child(
        self,
        headers: Iterable[tuple[str, str]],
        method: str,
        url: str,
        *,
        upstream: str,
        shadow: bool = False,
    ) -> Span | None:
        """A client span whose parent is the `traceparent` in `headers` (pairs), for calls made
        away from the request (shadow calls run after the primary answered). None when there
        is no parent or it is not sampled: the call then keeps the headers it has."""
        if self._tracer is None:
            return None
        value = next((v for k, v in headers if k.lower() == "traceparent"), None)
        parent = parse_traceparent(value)
        if parent is None or not parent.trace_flags.sampled:
            return None
        return self.start_client_span(
            NonRecordingSpan(parent), method, url, upstream=upstream, shadow=shadow, remote=True
        )

    def end_client_span(
        self, span: Span | None, status: int | None, error: BaseException | str | None = None
    ) -> None:
        """Close an attempt: `status` None means no response (timeout, refused, ...)."""
        if span is None:
            return
        if span.is_recording():
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            self._set_error(span, status, error, client=True)
        span.end()

    # -- propagation ---------------------------------------------------------------------------

    @staticmethod
    def inject(
        span: Span | None, headers: MutableMapping[str, str] | list[tuple[str, str]]
    ) -> None:
        """Write `span`'s context as `traceparent`/`tracestate` into the upstream headers
        (a mapping, or a list of (name, value) pairs edited in place).

        With no span (tracing off) the headers are left alone: whatever the client sent is
        forwarded as it came.
        """
        if span is None:
            return
        ctx = span.get_span_context()
        if ctx == INVALID_SPAN_CONTEXT:
            return
        new = [("traceparent", _format_traceparent(ctx))]
        if ctx.trace_state:
            new.append(("tracestate", ctx.trace_state.to_header()))
        if isinstance(headers, list):
            headers[:] = [h for h in headers if h[0].lower() not in _TRACE_HEADERS] + new
            return
        if ctx.trace_state is None or not ctx.trace_state:
            for key in [k for k in headers if k.lower() == "tracestate"]:
                del headers[key]
        for name, value in new:
            set_header(headers, name, value)

    @staticmethod
    def trace_id(span: Span | None, headers: Mapping[str, str] | None = None) -> str | None:
        """The trace id for log lines: the span's, else the client's `traceparent`'s."""
        if span is not None:
            ctx = span.get_span_context()
            if ctx.is_valid:
                return f"{ctx.trace_id:032x}"
        return trace_id_from_headers(headers) if headers is not None else None

    def shutdown(self, wait: bool = True, timeout: float = 3.0) -> None:
        """Flush and stop the exporter, waiting at most `timeout` seconds (`wait=False`: not at
        all, for reloads). An unreachable collector must not hold up a graceful shutdown: the
        exporter's own retries can take much longer, and the spans are expendable."""
        provider, self.provider, self._tracer = self.provider, None, None
        if provider is None:
            return
        worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        worker.start()
        if wait:
            worker.join(timeout)

    def _set_error(
        self, span: Span, status: int | None, error: BaseException | str | None, *, client: bool
    ) -> None:
        # Exception messages can quote headers or bodies: recorded redacted, without locals.
        if isinstance(error, BaseException):
            kind = type(error).__qualname__
            span.add_event(
                "exception",
                {"exception.type": kind, "exception.message": self.redactor.text(str(error))},
            )
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        elif error:
            span.set_attribute("error.type", str(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        elif status is not None and (status >= 500 or (client and status >= 400)):
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
