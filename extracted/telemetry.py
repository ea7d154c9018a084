"""A server span per request when OTEL_EXPORTER is `otlp` or `console`; nothing otherwise."""

from __future__ import annotations

import os

from aiohttp import web


def setup_tracing(service_name: str):
    """Return a tracer, or None when tracing is off (the default)."""
    exporter_name = os.environ.get("OTEL_EXPORTER", "").strip().lower()
    if exporter_name in {"", "none", "off"}:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
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
    return provider.get_tracer(name)


def tracing_middleware(tracer):
    """Continue the caller's trace (W3C traceparent) with one SERVER span per request."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, Status, StatusCode

    @web.middleware
    async def middleware(request: web.Request, handler):
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        context = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(
            f"{request.method} {template}",
            context=context,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "http.route": template,
                "url.path": request.path,
                "tenant.id": request.headers.get("X-Tenant-ID", ""),
                "strangler.shadow": request.headers.get("X-Strangler-Shadow") == "1",
            },
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    return middleware
