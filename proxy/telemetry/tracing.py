"""Traces for the proxy: one server span per request, one client span per attempt (OTLP).

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
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanContext, TraceFlags

from proxy.config.model import TracesConfig
from proxy.telemetry.export import OtlpHttpExport, SdkExport
from proxy.telemetry.redact import Redactor, needs_path_redaction
from proxy.telemetry.spans import (
    KIND_CLIENT,
    KIND_SERVER,
    RecordedSpan,
    Span,
    Unsampled,
    clean_tracestate,
    new_span_id,
    new_trace_id,
)

EXPORTERS = ("otlp", "console", "none")
# Methods the HTTP semantic conventions know; others are reported as "_OTHER".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})[ \t]*")
_TRACEPARENT_FUTURE = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-[^\r\n]*)?[ \t]*\Z"
)
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def _span_line(span: Any) -> str:
    """The `console` exporter's format: a span's JSON on one line."""
    return span.to_json(indent=None) + "\n"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value, case-insensitively, from a CIMultiDict or a plain dict."""
    value = headers.get(name)
    if value is not None or type(headers) is not dict:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def _parse(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) from a W3C `traceparent`; None when absent/malformed."""
    if not value or len(value) > 512:
        return None
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        # A later version may add fields after the flags: its first 55 characters parse
        # as version 00 (W3C Trace Context, "Versioning of traceparent").
        m = _TRACEPARENT_FUTURE.match(value)
        if m is None or m.group(1) == "00":
            return None
    if m.group(1) == "ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(m.group(4), 16)


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context in a W3C `traceparent`, or None when absent or malformed."""
    parsed = _parse(value)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header `name` (lower-case), in order: a CIMultiDict's fields, or a plain
    dict's differently-cased keys."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return getall(name, [])
    return [v for k, v in headers.items() if k.lower() == name]


def client_parent(headers: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of the client's `traceparent`; None when it is absent,
    malformed, or sent more than once (W3C: two `traceparent` fields are invalid, a new
    trace starts)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:  # a request's headers: presence and count in one lookup
        values = getall("traceparent", None)
        if values is None or len(values) != 1:
            return None
        return _parse(values[0])
    value = header(headers, "traceparent")
    if value is None or len(header_values(headers, "traceparent")) != 1:
        return None
    return _parse(value)


def client_tracestate(headers: Mapping[str, str]) -> str | None:
    """The client's `tracestate`, all its fields as one list (see `clean_tracestate`)."""
    getall = getattr(headers, "getall", None)
    values = (
        getall("tracestate", ()) if getall is not None else header_values(headers, "tracestate")
    )
    return clean_tracestate(values[0] if len(values) == 1 else values)


def trace_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """The caller's trace id (for log lines) without creating any span."""
    parsed = client_parent(headers)
    return f"{parsed[0]:032x}" if parsed else None


def host_port(host_header: str, scheme: str) -> int:
    """The port the client addressed (`Host: name:port`), else the scheme's default."""
    _, colon, port = host_header.rpartition(":")
    if colon and 0 < len(port) <= 5 and port.isdigit():
        return int(port)
    return 443 if scheme == "https" else 80


def set_header(headers: MutableMapping[str, str], name: str, value: str) -> None:
    """Set `name` replacing any differently-cased copy (plain dicts are case-sensitive)."""
    if type(headers) is dict:
        for key in [k for k in headers if k.lower() == name and k != name]:
            del headers[key]
    headers[name] = value


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
    if config.client_sampling not in ("follow", "ignore"):
        raise ValueError(
            f"telemetry.traces.client_sampling: unknown value {config.client_sampling!r}; "
            "use follow or ignore"
        )


class Tracing:
    """Creates and exports spans; `enabled` is False (and everything a no-op) for `none`.

    Spans are `proxy.telemetry.spans` records, not SDK spans (see that module for why);
    `provider` is where finished spans go (None when tracing is off or shut down).
    """

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
        self.provider: OtlpHttpExport | SdkExport | None = None
        self._sink: Any = None
        if not self.enabled:
            return
        resource = {
            "service.name": service_name,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "telemetry.sdk.name": "strangler",
            "telemetry.sdk.language": "python",
        }
        if exporter is not None:  # tests: export synchronously to this exporter instead
            self.provider = SdkExport(SimpleSpanProcessor(exporter), resource)
        elif config.exporter == "otlp":
            self.provider = OtlpHttpExport(config.endpoint, resource)
        else:
            # stderr, a line per span: stdout carries the access log, a JSON line per request
            # from another thread, which a span printed across lines would break up.
            console = ConsoleSpanExporter(out=sys.stderr, formatter=_span_line)
            self.provider = SdkExport(BatchSpanProcessor(console), resource)
        self._sink = self.provider
        self._sample = config.sample
        self._follow_client = config.client_sampling == "follow"

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
        host_header: str | None = None,
        client_address: str | None = None,
    ) -> Span | None:
        """The span for one proxied request, child of the client's `traceparent` if any.

        `server.port` is `server_port`, else the port of `host_header` (the client's `Host`,
        the scheme's default port without one): read only for a span that is recorded.

        Sampling follows the client's sampled flag when it sent a traceparent (unless
        `client_sampling: ignore`), else `sample`. An unsampled request gets a bare id pair
        (no recording at all) that still carries the trace id upstream with the flag off.
        """
        sink = self._sink
        if sink is None:
            return None
        parent = client_parent(headers)
        parent_id = 0
        state = None
        if parent is not None:
            trace_id, parent_id, flags = parent
            state = client_tracestate(headers)
            if self._follow_client:
                if not flags & 1:
                    return Unsampled(trace_id, new_span_id(), state)
            else:  # the client's trace joined, its flag not obeyed: a caller cannot ask
                sample = self._sample  # the proxy to record (and export) its requests
                if sample < 1.0 and random.random() >= sample:
                    return Unsampled(trace_id, new_span_id(), state)
        else:
            sample = self._sample
            if sample < 1.0 and random.random() >= sample:
                return Unsampled.fresh()
            trace_id = new_trace_id()
        # Past this point the span is recorded: attributes go in at creation (one dict).
        known = method in KNOWN_METHODS
        shown = method if known else "HTTP"
        name = f"{shown} {http_route}" if http_route else shown
        attrs: dict[str, str | int | bool] = {
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
        if server_port is None and host_header is not None:
            server_port = host_port(host_header, scheme)
        if server_port:
            attrs["server.port"] = server_port
        if client_address:
            attrs["client.address"] = client_address
        return RecordedSpan(
            sink,
            name,
            KIND_SERVER,
            trace_id,
            parent_id,
            attrs,
            remote_parent=parent is not None,
            trace_state=state,
        )

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
        if span is None or not span.sampled:
            return
        attrs = span.attributes
        attrs["http.response.status_code"] = status
        if mode is not None:
            attrs["strangler.mode"] = mode
        if side is not None:
            attrs["strangler.side"] = side
        if upstream is not None:
            attrs["strangler.upstream"] = upstream
        if tenant is not None:
            attrs["strangler.tenant"] = tenant
        if request_id is not None:
            attrs["strangler.request_id"] = request_id
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
    ) -> Span | None:
        """A span for one attempt to an upstream (retries, fallbacks and shadow calls each get
        their own), child of the request's server span so all share its trace id."""
        sink = self._sink
        if sink is None or parent is None:
            return None
        if not parent.sampled:
            return parent  # see `Unsampled`: the attempt carries the request's ids
        return self._client_span(
            sink,
            parent.trace_id,
            parent.span_id,
            parent.trace_state,
            method,
            self.redactor.path(url)
            if needs_path_redaction(url)
            else url,  # `;jsessionid=` is a secret
            upstream=upstream,
            attempt=attempt,
            fallback=fallback,
            shadow=shadow,
        )

    @staticmethod
    def _client_span(
        sink: Any,
        trace_id: int,
        parent_id: int,
        trace_state: str | None,
        method: str,
        url: str,
        *,
        upstream: str,
        attempt: int = 0,
        fallback: bool = False,
        shadow: bool = False,
        remote: bool = False,
    ) -> RecordedSpan:
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
        return RecordedSpan(
            sink,
            f"shadow {method}" if shadow else method,
            KIND_CLIENT,
            trace_id,
            parent_id,
            attrs,
            remote_parent=remote,
            trace_state=trace_state,
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
        sink = self._sink
        if sink is None:
            return None
        parents: list[str] = []
        states: list[str] = []
        for k, v in headers:
            lower = k.lower()
            if lower == "traceparent":
                parents.append(v)
            elif lower == "tracestate":
                states.append(v)
        parent = _parse(parents[0]) if len(parents) == 1 else None
        if parent is None or not parent[2] & 1:
            return None
        state = clean_tracestate(states)
        return self._client_span(
            sink,
            parent[0],
            parent[1],
            state,
            method,
            self.redactor.path(url) if needs_path_redaction(url) else url,
            upstream=upstream,
            shadow=shadow,
            remote=True,
        )

    def end_client_span(
        self, span: Span | None, status: int | None, error: BaseException | str | None = None
    ) -> None:
        """Close an attempt: `status` None means no response (timeout, refused, ...)."""
        if span is None or not span.sampled:
            return
        if status is not None:
            span.attributes["http.response.status_code"] = status
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
        state = span.trace_state
        if isinstance(headers, list):
            for i in range(len(headers) - 1, -1, -1):
                if headers[i][0].lower() in _TRACE_HEADERS:
                    del headers[i]
            headers.append(("traceparent", span.traceparent()))
            if state:
                headers.append(("tracestate", state))
            return
        if state:
            set_header(headers, "tracestate", state)
        else:
            for key in [k for k in headers if k.lower() == "tracestate"]:
                del headers[key]
        set_header(headers, "traceparent", span.traceparent())

    @staticmethod
    def trace_id(span: Span | None, headers: Mapping[str, str] | None = None) -> str | None:
        """The trace id for log lines: the span's, else the client's `traceparent`'s."""
        if span is not None:
            return span.trace_hex()
        return trace_id_from_headers(headers) if headers is not None else None

    def shutdown(self, wait: bool = True, timeout: float = 3.0) -> None:
        """Flush and stop the exporter, waiting at most `timeout` seconds (`wait=False`: not at
        all, for reloads). An unreachable collector must not hold up a graceful shutdown: the
        exporter's own retries can take much longer, and the spans are expendable."""
        provider, self.provider, self._sink = self.provider, None, None
        if provider is None:
            return
        worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        worker.start()
        if wait:
            worker.join(timeout)

    def _set_error(
        self,
        span: RecordedSpan,
        status: int | None,
        error: BaseException | str | None,
        *,
        client: bool,
    ) -> None:
        # Exception messages can quote headers or bodies: recorded redacted, without locals.
        if isinstance(error, BaseException):
            kind = type(error).__qualname__
            span.add_event(
                "exception",
                {"exception.type": kind, "exception.message": self.redactor.text(str(error))},
            )
            span.attributes["error.type"] = kind
            span.set_error(kind)
        elif error:
            span.attributes["error.type"] = str(error)
            span.set_error(str(error))
        elif status is not None and (status >= 500 or (client and status >= 400)):
            span.attributes["error.type"] = str(status)
            span.set_error()
