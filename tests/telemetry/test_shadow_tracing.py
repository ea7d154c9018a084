"""Shadow calls: counted as attempts, traced as `shadow GET` spans in the primary's trace."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from proxy.config.model import Config, TelemetryConfig, TracesConfig, Upstream
from proxy.shadow.model import ShadowRequest
from proxy.shadow.send import HttpSender
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import MULTIPROC_ENV
from proxy.telemetry.tracing import parse_traceparent
from tests.support.procs import PYTHON, free_port, running
from tests.telemetry.helpers import make_config, value


@pytest.fixture(scope="module")
def echo_upstream():
    port = free_port()
    with running(
        [PYTHON, "-m", "tests.support.upstream", str(port), "candidate"],
        ready_url=f"http://127.0.0.1:{port}/",
    ):
        yield port


def setup(port: int, exporter, sample: float = 1.0) -> tuple[Telemetry, Config]:
    base = make_config()
    upstreams = dict(base.upstreams)
    upstreams["customers"] = Upstream(
        name="customers", url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port
    )
    cfg = TelemetryConfig(traces=TracesConfig(exporter="console", sample=sample))
    config = Config(
        version=1, upstreams=MappingProxyType(upstreams), routes=base.routes, telemetry=cfg
    )
    t = Telemetry(cfg, span_exporter=exporter, configure_logs=False)
    t.reconfigure(config)
    return t, config


async def test_a_shadow_call_is_a_span_in_the_primary_trace(echo_upstream, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    exporter = InMemorySpanExporter()
    t, config = setup(echo_upstream, exporter)
    server = t.start_server_span({}, "GET", "/api/customers/7", config.routes[0])
    headers = [("accept", "application/json")]
    t.inject(server, headers)  # what the handler does when it builds the shadow request
    t.request_finished("customers", "shadow", "legacy", "GET", 200, 0.01, 1, span=server)

    sender = HttpSender(config.upstreams)
    send = t.traced_shadow_sender(sender)
    try:
        resp = await send("customers", ShadowRequest("GET", "/v1/customers/7", "", tuple(headers)))
    finally:
        await sender.close()
    assert resp.status == 200
    seen = dict(json.loads(resp.body)["headers"])
    spans = exporter.get_finished_spans()
    shadow = next(s for s in spans if s.name == "shadow GET")
    primary = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert shadow.kind == SpanKind.CLIENT
    assert shadow.context.trace_id == primary.context.trace_id
    assert shadow.parent.span_id == primary.context.span_id
    assert shadow.attributes["strangler.shadow"] is True
    assert shadow.attributes["url.full"] == f"http://127.0.0.1:{echo_upstream}/v1/customers/7"
    assert shadow.attributes["http.response.status_code"] == 200
    # The candidate continues the trace below the shadow span.
    assert parse_traceparent(seen["traceparent"]).span_id == shadow.context.span_id
    text = t.metrics_text()
    assert value(text, "strangler_upstream_attempts_total", upstream="customers", result="ok") == 1


async def test_untraced_shadow_calls_are_still_counted_and_failures_recorded(
    echo_upstream, monkeypatch
):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    exporter = InMemorySpanExporter()
    t, config = setup(echo_upstream, exporter)
    sender = HttpSender(config.upstreams)
    send = t.traced_shadow_sender(sender)
    request = ShadowRequest("GET", "/status/503", "", (("accept", "*/*"),))
    try:
        resp = await send("customers", request)  # no traceparent: no span, headers untouched
        assert resp.status == 503
        with pytest.raises(LookupError):
            await send("nowhere", request)
    finally:
        await sender.close()
    assert exporter.get_finished_spans() == ()
    text = t.metrics_text()
    assert value(text, "strangler_upstream_attempts_total", result="http_5xx") == 1
    assert value(text, "strangler_upstream_attempts_total", upstream="nowhere", result="error") == 1
