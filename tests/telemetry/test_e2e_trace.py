"""End to end: a client's trace continues through the proxy into the Django monolith."""

from __future__ import annotations

import httpx

from tests.support.procs import wait_until
from tests.support.world import legacy_headers, proxy_config, start_legacy, start_proxy
from tests.telemetry.otlp_sink import otlp_sink

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def legacy_tracing_env(collector: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector + "/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "legacy-shop",
    }


def test_tracing_none_passes_the_clients_traceparent_to_the_monolith(tmp_path):
    with (
        otlp_sink() as (collector, sink),
        start_legacy(tmp_path, env=legacy_tracing_env(collector)) as legacy,
    ):
        config = proxy_config({"legacy": legacy}, [], tmp_path)
        with start_proxy(tmp_path, config) as proxy:
            resp = httpx.get(
                proxy.base + "/api/customers/1",
                headers={
                    **legacy_headers(),
                    "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
                    "tracestate": "shop=1",
                },
                timeout=10,
            )
            assert resp.status_code == 200, resp.text

            def django_span():
                return next((s for s in sink.snapshot() if _is_api_call(s)), None)

            span = wait_until(django_span, timeout=15, what="the monolith's span")
    assert span.trace_id == CLIENT_TRACE
    # The proxy created no span of its own: the monolith's parent is the client's span.
    assert span.parent_span_id == CLIENT_SPAN
    assert not [s for s in sink.snapshot() if s.service == "strangler"]


def _is_api_call(span) -> bool:
    """The monolith's server span for the proxied call (not its /health readiness probe)."""
    path = span.attributes.get("url.path") or span.attributes.get("http.target") or ""
    return span.service == "legacy-shop" and span.kind == 2 and path.startswith("/api/customers")


def test_one_trace_from_the_proxy_into_the_monolith(tmp_path):
    """Proxy server span -> proxy attempt span -> Django span, all in one trace."""
    with (
        otlp_sink() as (collector, sink),
        start_legacy(tmp_path, env=legacy_tracing_env(collector)) as legacy,
    ):
        config = proxy_config({"legacy": legacy}, [], tmp_path)
        config["telemetry"]["traces"] = {
            "exporter": "otlp",
            "endpoint": collector,
            "sample": 1.0,
        }
        with start_proxy(tmp_path, config) as proxy:
            resp = httpx.get(proxy.base + "/api/customers/1", headers=legacy_headers(), timeout=10)
            assert resp.status_code == 200, resp.text

            def three_spans():
                spans = sink.snapshot()
                django = next((s for s in spans if _is_api_call(s)), None)
                ours = [s for s in spans if s.service == "strangler"]
                return (django, ours) if django and len(ours) >= 2 else None

            django, ours = wait_until(three_spans, timeout=15, what="proxy and monolith spans")
    server = next(s for s in ours if s.kind == 2)
    client = next(s for s in ours if s.kind == 3)
    assert server.trace_id == client.trace_id == django.trace_id
    assert server.parent_span_id == ""  # the client sent no traceparent
    assert client.parent_span_id == server.span_id
    assert django.parent_span_id == client.span_id
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["strangler.side"] == "legacy"
    assert server.attributes["strangler.tenant"] == "acme"
    assert client.attributes["peer.service"] == "legacy"
    assert "http.request.resend_count" not in client.attributes  # a first send, not a resend
