"""Traces: server and client spans share a trace, traceparent flows both ways, sampling holds."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from proxy.config.model import TelemetryConfig, TracesConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import MULTIPROC_ENV
from proxy.telemetry.tracing import Tracing, parse_traceparent
from tests.support.procs import PYTHON
from tests.telemetry.helpers import make_config

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def traced(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    exporter = InMemorySpanExporter()

    def build(sample: float = 1.0, client_sampling: str = "follow") -> Telemetry:
        traces = TracesConfig(exporter="console", sample=sample, client_sampling=client_sampling)
        cfg = TelemetryConfig(traces=traces)
        t = Telemetry(cfg, span_exporter=exporter, configure_logs=False)
        t.reconfigure(make_config(telemetry=cfg))
        return t

    build.exporter = exporter
    return build


def one_request(t: Telemetry, headers: dict, *, attempts: int = 1, status: int = 200):
    """Drive the calls the request path makes; returns the upstream headers of each attempt."""
    route = make_config().routes[0]
    t.request_started()
    span = t.start_server_span(
        headers, "GET", "/api/customers/17", route, server_address="shop.example", server_port=8080
    )
    sent = []
    for attempt in range(attempts):
        up_headers = dict(headers)
        child = t.attempt_started(
            span,
            "GET",
            "http://127.0.0.1:8102/v1/customers/17",
            upstream="customers",
            attempt=attempt,
        )
        t.inject(child, up_headers)
        sent.append(up_headers)
        t.attempt_finished(child, "customers", 503 if attempt < attempts - 1 else status)
    t.request_finished(
        "customers",
        "extracted",
        "extracted",
        "GET",
        status,
        0.01,
        10,
        upstream="customers",
        tenant="acme",
        request_id="req-00000001",
        span=span,
    )
    return sent


def test_server_and_client_spans_share_the_trace_and_the_traceparent_is_injected(traced):
    t = traced()
    (sent,) = one_request(t, {"Accept": "application/json"})
    spans = traced.exporter.get_finished_spans()
    client = next(s for s in spans if s.kind == SpanKind.CLIENT)
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert client.context.trace_id == server.context.trace_id
    assert client.parent.span_id == server.context.span_id
    assert server.parent is None  # no client traceparent: a new root
    injected = parse_traceparent(sent["traceparent"])
    assert injected.trace_id == server.context.trace_id
    assert injected.span_id == client.context.span_id  # the upstream's parent is the attempt
    assert server.name == "GET /api/customers/{id}"
    attrs = server.attributes
    assert attrs["http.request.method"] == "GET"
    assert attrs["url.path"] == "/api/customers/17"
    assert attrs["http.route"] == "/api/customers/{id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "shop.example"
    assert attrs["strangler.route"] == "customers"
    assert attrs["strangler.mode"] == "extracted"
    assert attrs["strangler.side"] == "extracted"
    assert attrs["strangler.upstream"] == "customers"
    assert attrs["strangler.tenant"] == "acme"
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == 8102
    assert client.attributes["peer.service"] == "customers"


def test_incoming_traceparent_and_tracestate_are_honoured(traced):
    t = traced()
    (sent,) = one_request(t, {"traceparent": CLIENT_PARENT, "tracestate": "vendor=abc"})
    server = next(s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE
    assert server.parent.span_id == 0x00F067AA0BA902B7
    assert sent["traceparent"].split("-")[1] == CLIENT_TRACE
    assert sent["traceparent"] != CLIENT_PARENT  # the parent is now our attempt span
    assert sent["tracestate"] == "vendor=abc"


def test_each_retry_is_its_own_span_with_its_resend_count(traced):
    t = traced()
    sent = one_request(t, {}, attempts=3)
    clients = [s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(clients) == 3
    assert len({s.context.span_id for s in clients}) == 3
    assert [s.attributes.get("http.request.resend_count") for s in clients] == [None, 1, 2]
    assert [s.status.status_code for s in clients] == [StatusCode.ERROR] * 2 + [StatusCode.UNSET]
    assert len({h["traceparent"] for h in sent}) == 3


def test_shadow_and_fallback_spans_belong_to_the_primary_trace(traced):
    t = traced()
    route = make_config().routes[0]
    server = t.start_server_span({}, "GET", "/api/customers/1", route)
    fb = t.attempt_started(
        server, "GET", "http://127.0.0.1:8101/api/customers/1", upstream="legacy", fallback=True
    )
    t.attempt_finished(fb, "legacy", 200)
    shadow = t.attempt_started(
        server, "GET", "http://127.0.0.1:8102/v1/customers/1", upstream="customers", shadow=True
    )
    t.request_finished("customers", "shadow", "legacy", "GET", 200, 0.01, 1, span=server)
    t.attempt_finished(shadow, "customers", None, error=TimeoutError("shadow timed out"))
    spans = {s.name: s for s in traced.exporter.get_finished_spans()}
    assert set(spans) == {"GET /api/customers/{id}", "GET", "shadow GET"}
    trace_ids = {s.context.trace_id for s in spans.values()}
    assert len(trace_ids) == 1
    assert spans["GET"].attributes["strangler.fallback"] is True
    assert spans["shadow GET"].attributes["strangler.shadow"] is True
    assert spans["shadow GET"].status.status_code == StatusCode.ERROR
    assert spans["shadow GET"].attributes["error.type"] == "TimeoutError"


def test_sampling_ratio_is_applied_to_new_traces(traced):
    t = traced(sample=0.1)
    n = 2000
    for _ in range(n):
        one_request(t, {})
    servers = [s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    # Binomial(2000, 0.1): mean 200, sd ~13.4; 120..280 is six sigma either way.
    assert 120 <= len(servers) <= 280


def test_unsampled_requests_still_propagate_an_unsampled_traceparent(traced):
    t = traced(sample=0.0)
    (sent,) = one_request(t, {})
    assert traced.exporter.get_finished_spans() == ()
    flags = int(sent["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # not sampled (bit 1, "random trace id", may be set)


def test_client_sampling_decision_is_followed(traced):
    t = traced(sample=0.0)
    one_request(t, {"traceparent": CLIENT_PARENT})  # flags 01: the caller samples
    assert len(traced.exporter.get_finished_spans()) == 2
    traced.exporter.clear()
    t2 = traced(sample=1.0)
    one_request(t2, {"traceparent": CLIENT_PARENT[:-2] + "00"})  # the caller does not
    assert traced.exporter.get_finished_spans() == ()


def test_client_sampling_ignore_joins_the_trace_but_samples_by_ratio(traced):
    """A caller cannot make the proxy record (and export) its requests with flag 01."""
    t = traced(sample=0.0, client_sampling="ignore")
    (sent,) = one_request(t, {"traceparent": CLIENT_PARENT})  # flags 01: asks to be sampled
    assert traced.exporter.get_finished_spans() == ()
    trace, _, flags = sent["traceparent"].split("-")[1:]
    assert trace == CLIENT_TRACE and int(flags, 16) & 1 == 0  # joined, not sampled
    t2 = traced(sample=1.0, client_sampling="ignore")
    one_request(t2, {"traceparent": CLIENT_PARENT[:-2] + "00"})  # the proxy samples anyway
    server = next(s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_malformed_traceparent_starts_a_fresh_trace(traced):
    t = traced()
    for bad in ("garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + CLIENT_PARENT[3:]):
        one_request(t, {"traceparent": bad})
    servers = [s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 3
    assert all(s.parent is None for s in servers)


def test_exception_messages_in_spans_are_redacted(traced):
    t = traced()
    route = make_config().routes[0]
    span = t.start_server_span({}, "GET", "/x", route)
    t.request_finished(
        "customers",
        "legacy",
        "legacy",
        "GET",
        502,
        0.01,
        0,
        span=span,
        error=RuntimeError("rejected Authorization: Token abcdefgh12345678"),
    )
    (server,) = traced.exporter.get_finished_spans()
    (event,) = server.events
    assert "abcdefgh12345678" not in event.attributes["exception.message"]
    assert server.status.status_code == StatusCode.ERROR


def test_tracing_none_creates_nothing_and_passes_the_header_untouched(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    assert not t.tracing.enabled and t.tracing.provider is None
    headers = {"traceparent": CLIENT_PARENT, "tracestate": "vendor=abc"}
    span = t.start_server_span(headers, "GET", "/x", None)
    assert span is None
    child = t.attempt_started(span, "GET", "http://u/x", upstream="legacy")
    assert child is None
    up = dict(headers)
    t.inject(child, up)
    assert up == headers
    assert Tracing.trace_id(None, headers) == CLIENT_TRACE


def test_reload_switches_the_exporter_on_and_off(traced, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    assert t.start_server_span({}, "GET", "/", None) is None
    on = TelemetryConfig(traces=TracesConfig(exporter="console", sample=1.0))
    t._span_exporter = traced.exporter  # as if built with it; the exporter kind is irrelevant
    t.reconfigure(make_config(telemetry=on))
    span = t.start_server_span({}, "GET", "/", None)
    assert span is not None and span.is_recording()
    t.request_finished(None, "legacy", "legacy", "GET", 200, 0.001, 0, span=span)
    assert len(traced.exporter.get_finished_spans()) == 1
    t.reconfigure(make_config(telemetry=TelemetryConfig()))
    assert t.start_server_span({}, "GET", "/", None) is None


def test_bad_traces_config_names_the_field():
    with pytest.raises(ValueError, match="telemetry.traces.exporter.*'jaeger'"):
        Tracing(TracesConfig(exporter="jaeger"))
    with pytest.raises(ValueError, match="telemetry.traces.sample.*1.5"):
        Tracing(TracesConfig(exporter="console", sample=1.5))
    with pytest.raises(ValueError, match="client_sampling"):
        Tracing(TracesConfig(exporter="console", client_sampling="always"))


def test_inject_into_a_header_list_replaces_the_clients_copies(traced):
    t = traced()
    span = t.start_server_span({"traceparent": CLIENT_PARENT}, "GET", "/x", None)
    child = t.attempt_started(span, "GET", "http://u:1/x", upstream="legacy")
    headers = [("Accept", "*/*"), ("TraceParent", CLIENT_PARENT), ("X-Other", "1")]
    t.inject(child, headers)
    names = [n.lower() for n, _ in headers]
    assert names.count("traceparent") == 1 and names[:2] == ["accept", "x-other"]
    sent = dict(headers)["traceparent"]
    assert sent.split("-")[1] == CLIENT_TRACE and sent != CLIENT_PARENT


def test_shutdown_does_not_wait_long_for_an_unreachable_collector(monkeypatch):
    import time

    from tests.support.procs import free_port

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    t = Tracing(TracesConfig(exporter="otlp", endpoint=dead, sample=1.0))
    span = t.start_server_span({}, "GET", "/", route="r")
    t.end_server_span(span, 200)
    started = time.monotonic()
    t.shutdown(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert t.start_server_span({}, "GET", "/") is None  # stopped: no more spans


def test_an_unsampled_client_trace_goes_upstream_unsampled_with_its_tracestate(traced):
    t = traced(sample=1.0)
    unsampled = CLIENT_PARENT[:-2] + "00"
    (sent,) = one_request(t, {"traceparent": unsampled, "tracestate": "vendor=abc"})
    version, trace, _, flags = sent["traceparent"].split("-")
    assert (version, trace, flags) == ("00", CLIENT_TRACE, "00")
    assert sent["tracestate"] == "vendor=abc"
    assert traced.exporter.get_finished_spans() == ()


def test_a_tracestate_with_control_characters_is_not_forwarded(traced):
    t = traced()
    (sent,) = one_request(t, {"traceparent": CLIENT_PARENT, "tracestate": "a=1\r\nX-Evil: 1"})
    assert "tracestate" not in sent
    (server,) = [s for s in traced.exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.parent.span_id == 0x00F067AA0BA902B7 and not server.context.trace_state


def test_console_exporter_prints_a_line_per_span_to_stderr():
    """stdout is the access log's, a JSON line per request; spans go to stderr, one line
    each, so neither breaks the other's lines."""
    script = (
        "from proxy.config.model import TracesConfig\n"
        "from proxy.telemetry.tracing import Tracing\n"
        "t = Tracing(TracesConfig(exporter='console', sample=1.0))\n"
        "for path in ('/console', '/again'):\n"
        "    span = t.start_server_span({}, 'GET', path, route='r', http_route=path)\n"
        "    t.end_server_span(span, 200)\n"
        "t.shutdown(wait=True, timeout=5)\n"
        "print('trace', format(span.trace_id, '032x'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    done = subprocess.run(
        [PYTHON, "-c", script], capture_output=True, text=True, timeout=30, env=env, check=True
    )
    assert done.stdout.startswith("trace ") and done.stdout.count("\n") == 1, done.stdout
    trace = done.stdout.split()[1]
    spans = [json.loads(line) for line in done.stderr.splitlines()]
    assert [s["name"] for s in spans] == ["GET /console", "GET /again"]
    assert spans[1]["context"]["trace_id"] == f"0x{trace}"


def test_traceparent_and_tracestate_follow_the_w3c_parsing_rules():
    from proxy.telemetry.spans import clean_tracestate
    from proxy.telemetry.tracing import parse_traceparent, trace_id_from_headers

    ids = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
    future = parse_traceparent(f"01-{ids}-01-what-a-later-version-adds")
    assert future is not None and future.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert parse_traceparent(f"00-{ids}-01-extra") is None  # version 00 has exactly 4 fields
    assert parse_traceparent(f"ff-{ids}-01") is None
    # The access log's trace id follows the same rules (exporter none: no span to ask).
    assert trace_id_from_headers({"traceparent": f"ff-{ids}-01"}) is None
    zero_parent = "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"
    assert trace_id_from_headers({"traceparent": zero_parent}) is None
    assert trace_id_from_headers({"traceparent": f"00-{ids}-01"}) == ids.split("-")[0]

    assert clean_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE") == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert clean_tracestate("a=1,,b=2") == "a=1,b=2"  # empty members are allowed, dropped
    assert clean_tracestate("tenant@vendor=x") == "tenant@vendor=x"
    assert clean_tracestate("!!!not a tracestate;;;") is None
    assert clean_tracestate("Upper=1") is None  # keys are lower-case
    assert clean_tracestate(",".join(f"k{i}=v" for i in range(33))) is None  # over 32 members


def test_a_session_in_the_path_stays_out_of_both_spans(traced):
    """`;jsessionid=` is the session: neither the server span's `url.path` nor the upstream
    call's `url.full` may carry it."""
    t = traced()
    route = make_config().routes[0]
    span = t.start_server_span({}, "GET", "/cart;jsessionid=S3CRET", route)
    url = "http://127.0.0.1:8102/cart;jsessionid=S3CRET?next=/x&access_token=Q53CRET"
    child = t.attempt_started(span, "GET", url, upstream="customers")
    t.attempt_finished(child, "customers", 200)
    t.request_finished("customers", "extracted", "extracted", "GET", 200, 0.01, 1, span=span)
    spans = traced.exporter.get_finished_spans()
    attrs = [dict(s.attributes) for s in spans]
    assert len(attrs) == 2 and "S3CRET" not in repr(attrs), attrs
    assert [a["url.full"] for a in attrs if "url.full" in a] == [
        "http://127.0.0.1:8102/cart;jsessionid=[REDACTED]"  # the query is never in it
    ]


@pytest.mark.parametrize(
    ("host_header", "scheme", "server_port", "expected"),
    [
        ("shop.example:8443", "http", None, 8443),
        ("shop.example", "http", None, 80),
        ("shop.example", "https", None, 443),
        ("[::1]:9000", "http", None, 9000),
        ("[::1]", "https", None, 443),
        ("shop.example:123456", "http", None, 80),  # not a port
        ("shop.example:8443", "http", 7, 7),  # an explicit server_port wins
    ],
)
def test_server_port_is_the_port_of_the_host_header(
    traced, host_header, scheme, server_port, expected
):
    """The handler hands over the client's Host; `server.port` is read from it only for a
    span that is recorded (an unsampled request pays nothing for it)."""
    t = traced()
    span = t.start_server_span(
        {},
        "GET",
        "/x",
        None,
        scheme=scheme,
        server_address="shop.example",
        server_port=server_port,
        host_header=host_header,
    )
    t.request_finished(None, "legacy", "legacy", "GET", 200, 0.001, 0, span=span)
    (server,) = traced.exporter.get_finished_spans()
    assert server.attributes["server.port"] == expected
    assert server.attributes["url.scheme"] == scheme


def test_an_unsampled_request_reads_no_port_from_the_host_header(traced):
    """`host_header` is read only once the span is recorded."""

    class Unreadable(str):
        def rpartition(self, sep):  # what reading the port would call
            raise AssertionError("the Host header was parsed for an unsampled request")

    t = traced(sample=0.0)
    span = t.start_server_span({}, "GET", "/x", None, host_header=Unreadable("a:1"))
    assert span is not None and not span.is_recording()
    recorded = traced(sample=1.0)
    with pytest.raises(AssertionError, match="parsed"):
        recorded.start_server_span({}, "GET", "/x", None, host_header=Unreadable("a:1"))
