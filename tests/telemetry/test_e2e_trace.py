"""End to end: a client's trace continues through the proxy into the Django monolith."""

from __future__ import annotations

import httpx

from tests.support.procs import wait_until
from tests.support.world import (
    legacy_headers,
    proxy_config,
    start_customers,
    start_legacy,
    start_proxy,
)
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


def test_one_trace_reaches_the_databases_of_the_monolith_and_a_service(tmp_path):
    """proxy → monolith → SQL and proxy → customers service → SQL, one trace each; the
    statements are spans below their request's span, and no query secret is recorded."""
    with (
        otlp_sink() as (collector, sink),
        start_legacy(tmp_path, env=legacy_tracing_env(collector)) as legacy,
        start_customers(
            tmp_path, env={**legacy_tracing_env(collector), "OTEL_SERVICE_NAME": "customers"}
        ) as customers,
    ):
        routes = [
            {
                "name": "customer-detail",
                "match": {"path": "/api/customers/{id}"},
                "mode": "extracted",
                "target": "customers",
                "rewrite": "/v1/customers/{id}",
            }
        ]
        config = proxy_config({"legacy": legacy, "customers": customers}, routes, tmp_path)
        config["telemetry"]["traces"] = {"exporter": "otlp", "endpoint": collector, "sample": 1.0}
        with start_proxy(tmp_path, config) as proxy:
            for path in ("/api/customers?page=1&token=S3CRET-TOKEN", "/api/customers/1"):
                resp = httpx.get(proxy.base + path, headers=legacy_headers(), timeout=10)
                assert resp.status_code in (200, 404), resp.text

            def both_traces():
                spans = sink.snapshot()
                by_id = {s.span_id: s for s in spans}
                chains = {}
                for s in spans:
                    if s.attributes.get("db.operation.name") != "SELECT":
                        continue
                    chain = [s]
                    while chain[-1].parent_span_id in by_id:
                        chain.append(by_id[chain[-1].parent_span_id])
                    if chain[-1].service == "strangler":  # not a readiness probe's
                        chains.setdefault(s.service, chain)
                done = all(len(chains.get(name, ())) == 4 for name in ("legacy-shop", "customers"))
                return (chains, spans) if done else None

            chains, spans = wait_until(both_traces, timeout=20, what="statement spans")
    for service, chain in chains.items():
        statement, server, attempt, proxy_server = chain
        assert [s.service for s in chain] == [service, service, "strangler", "strangler"]
        assert [s.kind for s in chain] == [3, 2, 3, 2]
        assert len({s.trace_id for s in chain}) == 1
        assert proxy_server.parent_span_id == ""
        assert statement.attributes["db.system.name"] == "sqlite"
        assert statement.attributes["db.query.text"].startswith("SELECT")
    assert "S3CRET-TOKEN" not in repr([s.attributes for s in spans])


def test_the_monolith_records_no_secret_from_the_query_string(tmp_path):
    """Django's span keeps the query (`http.target`), with credential values redacted."""
    with (
        otlp_sink() as (collector, sink),
        start_legacy(tmp_path, env=legacy_tracing_env(collector)) as legacy,
    ):
        config = proxy_config({"legacy": legacy}, [], tmp_path)
        with start_proxy(tmp_path, config) as proxy:
            query = "page=1&password=hunter2&access_token=S3CRET&api_key=K3Y&author=ann"
            resp = httpx.get(
                f"{proxy.base}/api/customers?{query}", headers=legacy_headers(), timeout=10
            )
            assert resp.status_code == 200, resp.text

            def django_span():
                return next((s for s in sink.snapshot() if _is_api_call(s)), None)

            span = wait_until(django_span, timeout=15, what="the monolith's span")
    recorded = repr(span.attributes)
    for secret in ("hunter2", "S3CRET", "K3Y"):
        assert secret not in recorded, recorded
    target = span.attributes.get("http.target") or "?" + span.attributes["url.query"]
    assert target.endswith(
        "?page=1&password=[REDACTED]&access_token=[REDACTED]&api_key=[REDACTED]&author=ann"
    )
