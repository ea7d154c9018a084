"""`Telemetry`: the one object the request path talks to for metrics, traces and logs.

One per process (per worker). It owns the redactor, the metrics registry, the tracer and the
request log, and rebinds all of them on `reconfigure` so the request path never builds label
strings or checks config flags more than once per request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import IO, Any

from opentelemetry.sdk.trace.export import SpanExporter

from proxy.config.model import Config, Route, TelemetryConfig
from proxy.telemetry.logging import RequestLog, configure_logging, json_access_fields
from proxy.telemetry.metrics import CONTENT_TYPE, DEFAULT_ROUTE, Metrics
from proxy.telemetry.redact import Redactor, needs_path_redaction
from proxy.telemetry.spans import Span
from proxy.telemetry.tracing import Tracing, trace_id_from_headers

RELOAD_HISTORY = 20


def http_route(route: Route) -> str:
    """The low-cardinality template for `http.route`: the path template, prefix/* or name."""
    m = route.match
    if m.path:
        return m.path
    if m.prefix:
        return "/*" if m.prefix == "/" else f"{m.prefix}/*"
    return f"~{route.name}"


def attempt_result(status: int | None, error: BaseException | str | None = None) -> str:
    """The `result` label of `strangler_upstream_attempts_total` for one attempt."""
    if error is not None:
        if isinstance(error, TimeoutError | asyncio.TimeoutError):
            return "timeout"
        name = type(error).__name__
        if (
            isinstance(error, ConnectionError)
            or name == "ConnectFailed"
            or name.startswith("ClientConnector")
        ):
            return "connect_error"
        if isinstance(error, str) and error in ("timeout", "connect_error"):
            return error
        return "error"
    if status is None:
        return "error"
    return "http_5xx" if status >= 500 else "ok"


class Telemetry:
    """Metrics + traces + logs for one process; see docs/operations.md for the contract."""

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        service_name: str = "strangler",
        span_exporter: SpanExporter | None = None,
        log_stream: IO[str] | None = None,
        configure_logs: bool = True,
    ) -> None:
        self.service_name = service_name
        self._span_exporter = span_exporter
        self._log_stream = log_stream
        self._configure_logs = configure_logs
        self.config = config
        self.redactor = Redactor(config.redact)
        self._in_flight: Callable[[], int] | None = None
        self.metrics: Metrics | None = self._new_metrics() if config.metrics else None
        self.tracing = Tracing(
            config.traces,
            service_name=service_name,
            exporter=span_exporter,
            redactor=self.redactor,
        )
        self.log = RequestLog()
        self._routes: dict[str, str] = {}
        self._upstream_urls: dict[str, str] = {}
        self._reloads: deque[dict[str, Any]] = deque(maxlen=RELOAD_HISTORY)
        self._bad_events: set[str] = set()
        if configure_logs:
            configure_logging(config.log_format, self.redactor, stream=log_stream)

    # -- configuration -------------------------------------------------------------------------

    def _new_metrics(self) -> Metrics:
        metrics = Metrics()
        metrics.in_flight_source = self._in_flight
        return metrics

    def track_in_flight(self, source: Callable[[], int]) -> None:
        """Where the in-flight gauge reads the requests being handled (the server's own
        count, read at scrape time rather than kept per request)."""
        self._in_flight = source
        if self.metrics is not None:
            self.metrics.in_flight_source = source

    def publish_in_flight(self) -> None:
        """Refresh this process's in-flight value for other workers' scrapes."""
        if self.metrics is not None:
            self.metrics.publish_in_flight()

    def reconfigure(self, config: Config) -> None:
        """Apply a (re)loaded config: route templates, redaction, log format, exporter."""
        tc = config.telemetry
        old = self.config
        self._routes = {r.name: http_route(r) for r in config.routes}
        self._upstream_urls = {
            name: f"{up.scheme}://{up.host}:{up.port}{up.base_path}"
            for name, up in config.upstreams.items()
        }
        if tc.redact != old.redact:
            self.redactor = Redactor(tc.redact)
            self.tracing.redactor = self.redactor
        if self._configure_logs and (tc.log_format != old.log_format or tc.redact != old.redact):
            configure_logging(tc.log_format, self.redactor, stream=self._log_stream)
        if tc.traces != old.traces:
            fresh = Tracing(
                tc.traces,
                service_name=self.service_name,
                exporter=self._span_exporter,
                redactor=self.redactor,
            )
            self.tracing, stale = fresh, self.tracing
            stale.shutdown(wait=False)
        if tc.metrics and self.metrics is None:
            self.metrics = self._new_metrics()
        elif not tc.metrics:
            self.metrics = None
        if self.metrics is not None:
            self.metrics.rebind()
            self.metrics.set_config_version(config.version)
        self.config = tc

    # -- the request path ----------------------------------------------------------------------

    def request_started(self) -> float:
        """Optional, when a request arrives: counts it in flight; returns `perf_counter()`.

        Requests finished without having been started are counted but never made the in-flight
        gauge go below zero.
        """
        if self.metrics is not None:
            self.metrics.started()
        return time.perf_counter()

    def start_server_span(
        self,
        headers: Mapping[str, str],
        method: str,
        path: str,
        route: Route | None,
        *,
        scheme: str = "http",
        server_address: str | None = None,
        server_port: int | None = None,
        host_header: str | None = None,
        client_address: str | None = None,
    ) -> Span | None:
        """The request's server span, or None when tracing is off (nothing is created)."""
        tracing = self.tracing
        if not tracing.enabled:
            return None
        name = route.name if route is not None else None
        return tracing.start_server_span(
            headers,
            method,
            self.redactor.path(path) if needs_path_redaction(path) else path,
            route=name or DEFAULT_ROUTE,
            http_route=self._routes.get(name) if name else None,
            scheme=scheme,
            server_address=server_address,
            server_port=server_port,
            host_header=host_header,
            client_address=client_address,
        )

    def attempt_started(
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
        """A client span for one upstream attempt (inject it into that attempt's headers)."""
        if parent is None:
            return None
        return self.tracing.start_client_span(
            parent,
            method,
            url,
            upstream=upstream,
            attempt=attempt,
            fallback=fallback,
            shadow=shadow,
        )

    def attempt_finished(
        self,
        span: Span | None,
        upstream: str,
        status: int | None,
        *,
        error: BaseException | str | None = None,
    ) -> None:
        """Count the attempt by result and close its span."""
        if self.metrics is not None:
            self.metrics.count(
                "upstream_attempt", upstream=upstream, result=attempt_result(status, error)
            )
        if span is not None:
            self.tracing.end_client_span(span, status, error)

    @staticmethod
    def inject(span: Span | None, headers: MutableMapping[str, str]) -> None:
        """Put `span`'s traceparent into upstream headers; with no span, leave them as they are."""
        Tracing.inject(span, headers)

    def request_finished(
        self,
        route: str | None,
        mode: str,
        side: str,
        method: str,
        status: int,
        duration_s: float,
        bytes_out: int,
        *,
        upstream: str | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        tenant: str | None = None,
        path: str | None = None,
        query: str | None = None,
        bytes_in: int | None = None,
        client: str | None = None,
        fallback: str | None = None,
        span: Span | None = None,
        headers: Mapping[str, str] | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """Everything at the end of a request: metrics, the server span, the access line.

        `route` None means the request matched no route (label "default"). `trace_id` may be
        omitted: it comes from `span`, else from the client's `traceparent` in `headers`.
        """
        route_label = route or DEFAULT_ROUTE
        metrics = self.metrics
        if metrics is not None:
            metrics.finished(route_label, mode, side, method, status, duration_s)
        if trace_id is None:
            if span is not None:
                trace_id = Tracing.trace_id(span)
            elif headers is not None:
                trace_id = trace_id_from_headers(headers)
        if span is not None:
            self.tracing.end_server_span(
                span,
                status,
                mode=mode,
                side=side,
                upstream=upstream,
                tenant=tenant,
                request_id=request_id,
                error=error,
            )
        if path and needs_path_redaction(path):
            path = self.redactor.path(path)
        log = self.log
        handler = log.json_direct()
        if handler is not None:
            # The usual case (JSON lines to a stream): the line written from the values, with
            # neither the dict below nor its generic encoding (the same bytes).
            encoded = json_access_fields(
                request_id,
                trace_id,
                route_label,
                mode,
                side,
                upstream,
                method,
                path,
                status,
                round(duration_s * 1000.0, 3),
                bytes_out,
                tenant,
                self.redactor.query(query) if query else None,
                bytes_in,
                client,
                fallback,
                None if error is None else self._error_text(error),
            )
            if encoded is not None:
                log.write_json(handler, encoded)
                return
        fields: dict[str, Any] = {
            "request_id": request_id,
            "trace_id": trace_id,
            "route": route_label,
            "mode": mode,
            "side": side,
            "upstream": upstream,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_s * 1000.0, 3),
            "bytes_out": bytes_out,
            "tenant": tenant,
        }
        if query:
            fields["query"] = self.redactor.query(query)
        if bytes_in is not None:
            fields["bytes_in"] = bytes_in
        if client is not None:
            fields["client"] = client
        if fallback is not None:
            fields["fallback"] = fallback
        if error is not None:
            fields["error"] = self._error_text(error)
        log.access(fields)

    def _error_text(self, error: BaseException | str) -> str:
        """An access line's `error`: an exception's class name, or the text redacted."""
        if isinstance(error, BaseException):
            return type(error).__qualname__
        return self.redactor.text(str(error))

    def exchange_finished(self, ex: Any, duration_s: float) -> None:
        """`request_finished` from the handler's per-request record (`proxy.handler.Exchange`).

        Reads `route`, `side`, `upstream`, `method`, `status`, `bytes_out`, `request_id`,
        `tenant`, `path`, `fallback_reason`, and when present `span`, `query`, `client`,
        `headers` (the client's request headers, for its traceparent) and `error`.
        Usable directly as the handler's `on_finish` callback.
        """
        route = ex.route
        get = getattr
        self.request_finished(
            route.name if route is not None else None,
            route.mode if route is not None else "legacy",
            ex.side,
            ex.method,
            ex.status,
            duration_s,
            ex.bytes_out,
            upstream=ex.upstream or None,
            request_id=ex.request_id,
            tenant=ex.tenant,
            path=ex.path,
            query=get(ex, "query", None),
            client=get(ex, "client", None),
            fallback=ex.fallback_reason,
            span=get(ex, "span", None),
            headers=get(ex, "headers", None),
            error=get(ex, "error", None),
        )

    def traced_shadow_sender(
        self, send: Callable[[str, Any], Awaitable[Any]]
    ) -> Callable[[str, Any], Awaitable[Any]]:
        """Wrap the shadow mirror's `send(upstream_name, ShadowRequest)` so each shadow call is
        counted as an upstream attempt and, when the primary's trace is sampled, gets a
        `shadow <METHOD>` client span in that trace and carries its `traceparent`.

        The trace is found through the `traceparent` in the ShadowRequest's headers, so the
        handler injects the server span there (`inject(ex.span, shadow_headers)`) when it
        builds the request.
        """

        async def send_traced(upstream_name: str, request: Any) -> Any:
            span = self.tracing.start_remote_child(
                request.headers,
                request.method,
                self._upstream_urls.get(upstream_name, "") + request.path,
                upstream=upstream_name,
                shadow=True,
            )
            if span is not None:
                headers = list(request.headers)
                Tracing.inject(span, headers)
                request = dataclasses.replace(request, headers=tuple(headers))
            try:
                response = await send(upstream_name, request)
            except BaseException as exc:
                self.attempt_finished(span, upstream_name, None, error=exc)
                raise
            self.attempt_finished(span, upstream_name, getattr(response, "status", None))
            return response

        return send_traced

    def error(
        self,
        message: str,
        *,
        request_id: str | None = None,
        trace_id: str | None = None,
        exc: BaseException | None = None,
        **fields: Any,
    ) -> None:
        """An error line carrying the request's ids; all values are redacted."""
        self.log.error(message, request_id=request_id, trace_id=trace_id, exc=exc, **fields)

    # -- events --------------------------------------------------------------------------------

    def count(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        """Bump an event counter (see `proxy.telemetry.metrics.EVENTS` for names and labels).

        A wrong name or label set is a bug in the caller, but it must not fail the request it
        happens in: it is logged once (with what is valid) and otherwise ignored.
        """
        if self.metrics is None:
            return
        try:
            self.metrics.count(name, amount, **labels)
        except (KeyError, ValueError) as exc:
            if name not in self._bad_events:
                self._bad_events.add(name)
                self.log.error(
                    f"telemetry event not counted: {exc.args[0]}", request_id=None, trace_id=None
                )

    def breaker_changed(self, upstream: str, old: str, new: str) -> None:
        """A circuit breaker moved from `old` to `new` ("closed", "half_open", "open")."""
        if self.metrics is not None:
            self.metrics.count(
                "breaker_transition", upstream=upstream, from_state=old, to_state=new
            )
            self.metrics.set_breaker_state(upstream, new)

    def reload_finished(
        self,
        ok: bool,
        *,
        version: int | None = None,
        error: str | None = None,
        trigger: str = "file",
        at: float | None = None,
        generation: int | None = None,
    ) -> None:
        """Count a reload and remember it for the dashboard; failures are logged too.

        `version` is routes.yaml's `version:`, `generation` the proxy's reload counter."""
        self.count("config_reload", result="ok" if ok else "failed")
        entry = {
            "at": time.time() if at is None else at,
            "ok": ok,
            "version": version,
            "generation": generation,
            "trigger": trigger,
            "error": self.redactor.text(error) if error else None,
        }
        self._reloads.appendleft(entry)
        if not ok:
            self.log.error(
                "config reload failed",
                request_id=None,
                trace_id=None,
                reason=error,
                trigger=trigger,
            )

    def reloads(self) -> list[dict[str, Any]]:
        """Recent reloads, newest first."""
        return list(self._reloads)

    # -- exposition ----------------------------------------------------------------------------

    def metrics_text(self) -> bytes:
        """The Prometheus exposition for GET /metrics (all workers when multiprocess)."""
        return self.metrics.text() if self.metrics is not None else b""

    content_type = CONTENT_TYPE

    def samples(self) -> Iterable[tuple[str, dict[str, str], float]]:
        """Current metric samples as plain data (for the dashboard)."""
        return self.metrics.samples() if self.metrics is not None else ()

    def shutdown(self) -> None:
        """Flush spans still buffered for export, and access lines still buffered."""
        self.log.flush()
        self.tracing.shutdown(wait=True)
