"""OpenTelemetry for the monolith, off unless OTEL_EXPORTER is `otlp` or `console`.

Django's instrumentation gives one server span per request (continuing the proxy's
`traceparent`); below it, each SQL statement is a client span (`statement_spans`), so one trace
shows proxy → monolith → database. Query strings in the server span are redacted: a client's
`?token=…` or `?password=…` must not reach the tracing backend.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

# Query parameters whose values never go into a span: credentials, sessions, one-time codes.
_SECRET_PARAM = re.compile(
    r"token|secret|passw|pwd|apikey|api_key|api-key|accesskey|access_key|signature|"
    r"credential|session|sessid|csrf|authoriz|^(?:auth|key|sig|jwt|pin|sid|code)$|\.sid$",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"(?P<name>[^&=;]+)=(?P<value>[^&;]*)")
# Span attributes that carry the request's query string (old and stable HTTP conventions).
_QUERY_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query")
# The first word of a statement, as `db.operation.name` and the span's name.
_OPERATIONS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP", "WITH", "PRAGMA"}
)


def redact_query(value: str) -> str:
    """`value` (a query string, or anything with one after `?`) with secret values replaced."""
    head, question, query = value.rpartition("?")
    if not question:
        head, query = "", value
    else:
        head += "?"

    def pair(m: re.Match[str]) -> str:
        if _SECRET_PARAM.search(m["name"]):
            return f"{m['name']}=[REDACTED]"
        return m[0]

    return head + _QUERY_PAIR.sub(pair, query)


def request_hook(span: Any, request: Any) -> None:
    """Django instrumentation hook: the server span's query-bearing attributes, redacted."""
    if not span.is_recording() or not request.META.get("QUERY_STRING"):
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _QUERY_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact_query(value))


def statement_spans(tracer: Any) -> Callable[..., Any]:
    """A Django `execute_wrapper`: each statement a CLIENT span below the request's span, with
    `db.system.name`, `db.operation.name` and `db.query.text` (the SQL with its placeholders;
    the parameters, which hold customer data, are never recorded)."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any):
        words = sql.split(None, 1)
        operation = words[0].upper() if words else ""
        attributes = {"db.system.name": context["connection"].vendor, "db.query.text": sql}
        if operation in _OPERATIONS:
            attributes["db.operation.name"] = operation
        with tracer.start_as_current_span(
            operation if operation in _OPERATIONS else attributes["db.system.name"],
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return execute(sql, params, many, context)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
                raise

    return wrapper


def _trace_statements(tracer: Any) -> None:
    """Wrap every database connection Django opens (one per gunicorn thread)."""
    from django.db.backends.signals import connection_created

    wrapper = statement_spans(tracer)

    def on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(on_connection, weak=False, dispatch_uid="legacy-demo-sql-spans")


def setup_tracing(service_name: str = "legacy-shop") -> bool:
    """Install a tracer provider and instrument Django; returns whether tracing is on."""
    exporter_name = os.environ.get("OTEL_EXPORTER", "").strip().lower()
    if exporter_name in {"", "none", "off"}:
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
        )
    )
    if exporter_name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        raise ValueError(
            f"OTEL_EXPORTER={exporter_name!r} is not supported; use otlp, console or leave it unset"
        )
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(request_hook=request_hook)
    _trace_statements(provider.get_tracer("legacy_demo.db"))
    return True
