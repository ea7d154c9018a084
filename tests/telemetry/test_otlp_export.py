"""The hand-written OTLP encoder against the official protobuf classes, and the export thread
against a real OTLP/HTTP receiver."""

from __future__ import annotations

import socket
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from proxy.config.model import TracesConfig
from proxy.telemetry import otlp
from proxy.telemetry.export import OtlpHttpExport, parse_headers, resolve_endpoint
from proxy.telemetry.spans import KIND_CLIENT, KIND_SERVER, RecordedSpan, clean_tracestate
from proxy.telemetry.tracing import Tracing
from tests.support.procs import free_port, wait_until
from tests.telemetry.otlp_sink import otlp_sink

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def _decode(body: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return req


def _value(v):
    return getattr(v, v.WhichOneof("value"))


def _finished(**overrides) -> RecordedSpan:
    done: list[RecordedSpan] = []
    attrs = {
        "url.path": "/api/kunden/ä" + "x" * 200,  # non-ASCII, and a length over one varint byte
        "server.port": 8080,
        "http.request.resend_count": 2,
        "strangler.fallback": True,
        "strangler.shadow": False,
        "neg": -5,
        "ratio": 0.25,
    }
    span = RecordedSpan(
        done.append,
        overrides.get("name", "GET /api/customers/{id}"),
        overrides.get("kind", KIND_SERVER),
        TRACE,
        overrides.get("parent", 0x00F067AA0BA902B7),
        attrs,
        remote_parent=overrides.get("remote", True),
        trace_state=overrides.get("state", "vendor=abc"),
    )
    span.add_event("exception", {"exception.type": "TimeoutError"})
    span.set_error("TimeoutError")
    span.end()
    assert done == [span]
    return span


def test_encoded_spans_decode_with_the_official_classes():
    server = _finished()
    client = _finished(name="shadow GET", kind=KIND_CLIENT, remote=False, state=None)
    header = otlp.resource_header({"service.name": "strangler", "pid": 42}, "strangler.proxy")
    req = _decode(otlp.request(header, [otlp.encode_span(server), otlp.encode_span(client)]))
    (rs,) = req.resource_spans
    assert {a.key: _value(a.value) for a in rs.resource.attributes} == {
        "service.name": "strangler",
        "pid": 42,
    }
    (ss,) = rs.scope_spans
    assert ss.scope.name == "strangler.proxy"
    got, got_client = ss.spans
    assert got.trace_id == TRACE.to_bytes(16, "big")
    assert got.span_id == server.span_id.to_bytes(8, "big")
    assert got.parent_span_id.hex() == "00f067aa0ba902b7"
    assert got.trace_state == "vendor=abc"
    assert got.name == "GET /api/customers/{id}"
    assert got.kind == 2 and got_client.kind == 3
    assert got.start_time_unix_nano == server.start_ns
    assert got.end_time_unix_nano == server.end_ns >= server.start_ns
    assert {a.key: _value(a.value) for a in got.attributes} == server.attributes
    (event,) = got.events
    assert event.name == "exception" and event.attributes[0].value.string_value == "TimeoutError"
    assert got.status.code == 2 and got.status.message == "TimeoutError"
    assert got.flags == 0x300 and got_client.flags == 0x100  # "parent is remote" known / set
    assert got_client.name == "shadow GET" and got_client.trace_state == ""


def test_repeating_attribute_cache_keeps_types_apart():
    # True == 1 and they hash alike: a cache keyed on the value alone would mix them up.
    for value in (1, True, 1, True):
        encoded = otlp.key_values(b"\x0a", {"server.port": value})
        kv = KeyValue.FromString(encoded[2:])  # past the tag and the one-byte length
        got = _value(kv.value)
        assert kv.key == "server.port" and got == value and type(got) is type(value)


def test_values_match_protobuf():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)):
        assert AnyValue.FromString(otlp.any_value(n)).int_value == n
    for text in ("", "plain", "ä€😀", "x" * 20000):
        assert AnyValue.FromString(otlp.any_value(text)).string_value == text
    assert AnyValue.FromString(otlp.any_value(-0.5)).double_value == -0.5
    assert AnyValue.FromString(otlp.any_value(False)).HasField("bool_value")


def test_tracestate_is_kept_only_when_printable():
    assert clean_tracestate(" vendor=abc,other=1 ") == "vendor=abc,other=1"
    assert clean_tracestate("vendor=abc\r\nX-Evil: 1") is None
    assert clean_tracestate("vendor=ä") is None
    assert clean_tracestate("a=" + "b" * 600) is None
    assert clean_tracestate("") is None


def test_endpoint_and_headers_follow_the_standard_variables(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert resolve_endpoint(None) == "http://collector:4318/v1/traces"
    assert resolve_endpoint("http://c:4318") == "http://c:4318/v1/traces"
    assert resolve_endpoint("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9/custom")
    assert resolve_endpoint(None) == "http://other:9/custom"
    assert parse_headers("api-key=a%3Db, x = 1,broken") == {"api-key": "a=b", "x": "1"}
    with pytest.raises(ValueError, match="telemetry.traces.endpoint.*ftp://c"):
        OtlpHttpExport("ftp://c/v1/traces", {})


def test_spans_reach_a_real_collector_in_one_trace_with_configured_headers(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant-key=s3cr%20t")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    with otlp_sink() as (collector, sink):
        tracing = Tracing(TracesConfig(exporter="otlp", endpoint=collector, sample=1.0))
        server = tracing.start_server_span({}, "GET", "/api/customers/3", route="customers")
        child = tracing.start_client_span(
            server, "GET", "http://127.0.0.1:8101/api/customers/3?x=1", upstream="legacy"
        )
        tracing.end_client_span(child, 503)
        tracing.end_server_span(server, 503, mode="legacy", request_id="r1")
        tracing.shutdown(wait=True, timeout=5)
        spans = wait_until(lambda: sink.snapshot() or None, timeout=5, what="exported spans")
        headers = sink.headers[0]
    by_kind = {s.kind: s for s in spans}
    assert set(by_kind) == {2, 3}
    assert by_kind[3].trace_id == by_kind[2].trace_id == f"{server.trace_id:032x}"
    assert by_kind[3].parent_span_id == by_kind[2].span_id
    assert by_kind[3].attributes["url.full"] == "http://127.0.0.1:8101/api/customers/3"
    assert by_kind[2].attributes["strangler.request_id"] == "r1"
    assert by_kind[2].service == "strangler"
    assert headers["x-tenant-key"] == "s3cr t"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/x-protobuf"


def _span(tracing_sink) -> RecordedSpan:
    span = RecordedSpan(tracing_sink, "GET", KIND_SERVER, TRACE, 0, {"url.path": "/"})
    span.end()
    return span


def test_batches_go_out_when_full_without_waiting_for_the_schedule():
    with otlp_sink() as (collector, sink):
        export = OtlpHttpExport(collector, {"service.name": "s"}, schedule_delay=60, batch_size=3)
        try:
            for _ in range(3):
                _span(export)
            wait_until(lambda: len(sink.snapshot()) == 3 or None, timeout=5, what="a full batch")
            assert sink.posts == 1 and export.exported == 3
        finally:
            export.shutdown(timeout=5)


def test_a_collector_refusing_a_batch_drops_it():
    with otlp_sink() as (collector, sink):
        sink.status = 400  # not retryable: dropped at once
        export = OtlpHttpExport(collector, {}, schedule_delay=60, batch_size=2, max_queue=4)
        try:
            _span(export)
            _span(export)
            wait_until(lambda: export.dropped == 2 or None, timeout=5, what="a rejected batch")
            assert sink.spans == [] and export.exported == 0
        finally:
            export.shutdown(timeout=5)


def test_a_full_queue_drops_new_spans_and_the_caller_never_waits():
    # A collector that accepts connections and never answers: the export thread is stuck in
    # its first POST while the request path keeps ending spans.
    port = free_port()
    hanging = socket.create_server(("127.0.0.1", port), backlog=8)
    export = OtlpHttpExport(
        f"http://127.0.0.1:{port}", {}, schedule_delay=60, batch_size=10, max_queue=10, timeout=30
    )
    try:
        for _ in range(10):
            _span(export)
        wait_until(lambda: not export._queue, timeout=5, what="the first batch taken")
        started = time.perf_counter()
        for _ in range(25):
            _span(export)
        assert time.perf_counter() - started < 0.5
        assert len(export._queue) == 10 and export.dropped == 15
    finally:
        hanging.close()  # the stuck POST fails; shutdown drops the rest
        export.shutdown(timeout=5)
    assert export.exported == 0 and export.dropped == 35


def test_endpoint_credentials_are_sent_as_basic_auth_and_never_shown(caplog):
    with otlp_sink() as (collector, sink):
        authed = collector.replace("http://", "http://tracer:pa%20ss@")
        export = OtlpHttpExport(authed, {}, schedule_delay=60, batch_size=1)
        try:
            _span(export)
            wait_until(lambda: sink.snapshot() or None, timeout=5, what="an exported span")
            assert sink.headers[0]["Authorization"] == "Basic dHJhY2VyOnBhIHNz"  # tracer:pa ss
            assert "pa%20ss" not in export.url and "tracer:***@" in export.url
        finally:
            export.shutdown(timeout=5)
