"""OpenTelemetry for the monolith, off unless OTEL_EXPORTER is `otlp` or `console`."""

from __future__ import annotations

import os


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
    DjangoInstrumentor().instrument()
    return True
