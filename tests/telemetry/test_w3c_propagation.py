"""W3C Trace Context through a real proxy process: what reaches the upstream, what is exported.

The cases follow the W3C trace-context test suite (test/test.py in w3c/trace-context): headers
are sent as repeated fields where the suite does, and the proxy's answer is read from what an
echoing upstream received and from the spans a real OTLP receiver decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, free_port, running, wait_until
from tests.telemetry.otlp_sink import OtlpSink, otlp_sink

TRACE = "12345678901234567890123456789012"
PARENT = f"00-{TRACE}-1234567890123456-01"


@dataclass(frozen=True)
class Traced:
    base: str
    sink: OtlpSink


@pytest.fixture(scope="module")
def traced_proxy(tmp_path_factory) -> Iterator[Traced]:
    """An echoing upstream behind `strangler serve` tracing every request to an OTLP sink."""
    tmp: Path = tmp_path_factory.mktemp("w3c")
    up, port, admin = free_port(), free_port(), free_port()
    with (
        otlp_sink() as (collector, sink),
        running(
            [PYTHON, "-m", "tests.support.upstream", str(up), "echo"],
            ready_url=f"http://127.0.0.1:{up}/",
        ),
    ):
        config = tmp / "routes.yaml"
        config.write_text(
            f"""version: 1
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin}}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{up}", retry: {{retries: 0}}}}
default: legacy
routes: []
telemetry:
  traces: {{exporter: otlp, endpoint: "{collector}", sample: 1.0}}
"""
        )
        with running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            env={"OTEL_BSP_SCHEDULE_DELAY": "50"},
        ):
            yield Traced(f"http://127.0.0.1:{port}", sink)


def upstream_saw(proxy: Traced, path: str, headers: list[tuple[str, str]]) -> dict[str, list]:
    """Send `headers` (repeats kept) through the proxy; the trace headers the upstream got."""
    resp = httpx.get(proxy.base + path, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    seen: dict[str, list] = {"traceparent": [], "tracestate": []}
    for name, value in resp.json()["headers"]:
        if name.lower() in seen:
            seen[name.lower()].append(value)
    return seen


def test_two_traceparent_fields_start_a_new_trace(traced_proxy):
    seen = upstream_saw(
        traced_proxy,
        "/w3c/duplicated",
        [
            ("traceparent", f"00-{TRACE[:-1]}1-1234567890123456-01"),
            ("traceparent", PARENT),
        ],
    )
    (sent,) = seen["traceparent"]
    trace = sent.split("-")[1]
    assert trace not in (TRACE, TRACE[:-1] + "1")

    def server_span():
        spans = traced_proxy.sink.snapshot()
        return next((s for s in spans if s.attributes.get("url.path") == "/w3c/duplicated"), None)

    span = wait_until(server_span, timeout=10, what="the proxy's server span")
    assert span.trace_id == trace and span.parent_span_id == ""


def test_tracestate_fields_are_combined_in_order(traced_proxy):
    seen = upstream_saw(
        traced_proxy,
        "/w3c/combined",
        [
            ("traceparent", PARENT),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", ""),
            ("tracestate", "baz=3"),
        ],
    )
    assert seen["traceparent"][0].split("-")[1] == TRACE
    assert seen["tracestate"] == ["foo=1,bar=2,rojo=1,congo=2,baz=3"]


@pytest.mark.parametrize(
    "fields",
    [
        ["foo=1,foo=2"],
        ["foo=1", "foo=1"],
        # 33 members over four fields (32 would pass: see the next test)
        [",".join(f"bar{i:02}={i:02}" for i in range(n, n + 10)) for n in (1, 11, 21)]
        + ["bar31=31,bar32=32,bar33=33"],
    ],
    ids=["duplicated-key", "duplicated-key-across-fields", "33-members-across-fields"],
)
def test_an_invalid_combined_tracestate_is_discarded(traced_proxy, fields):
    headers = [("traceparent", PARENT)] + [("tracestate", f) for f in fields]
    seen = upstream_saw(traced_proxy, "/w3c/invalid-state", headers)
    assert seen["traceparent"][0].split("-")[1] == TRACE
    assert seen["tracestate"] == []


def test_32_members_over_several_fields_are_kept(traced_proxy):
    fields = [",".join(f"bar{i:02}={i:02}" for i in range(n, n + 10)) for n in (1, 11, 21)]
    fields.append("bar31=31,bar32=32")
    headers = [("traceparent", PARENT)] + [("tracestate", f) for f in fields]
    (state,) = upstream_saw(traced_proxy, "/w3c/32", headers)["tracestate"]
    assert state.split(",") == [f"bar{i:02}={i:02}" for i in range(1, 33)]


def test_a_tracestate_over_512_characters_is_truncated_not_dropped(traced_proxy):
    """W3C: remove members longer than 128 characters first, then from the end."""
    long_member = "big=" + "x" * 200
    small = [f"k{i:02}=" + "v" * 40 for i in range(12)]  # 12 x 44 characters
    state = ",".join(["first=1", long_member, *small])
    assert len(state) > 512
    (sent,) = upstream_saw(
        traced_proxy, "/w3c/long", [("traceparent", PARENT), ("tracestate", state)]
    )["tracestate"]
    assert len(sent) <= 512
    kept = sent.split(",")
    assert kept[0] == "first=1" and long_member not in kept
    assert kept[1:] == small[: len(kept) - 1] and len(kept) - 1 >= 10


def test_the_server_span_names_the_address_the_client_used(traced_proxy):
    port = traced_proxy.base.rsplit(":", 1)[1]
    httpx.get(traced_proxy.base + "/w3c/address", headers={"Host": f"Shop.Example:{port}"})
    httpx.get(traced_proxy.base + "/w3c/address-default", headers={"Host": "shop.example"})

    def spans():
        got = {
            s.attributes.get("url.path"): s
            for s in traced_proxy.sink.snapshot()
            if s.kind == 2 and s.service == "strangler"
        }
        wanted = ("/w3c/address", "/w3c/address-default")
        return [got[p] for p in wanted] if all(p in got for p in wanted) else None

    with_port, default = wait_until(spans, timeout=10, what="both server spans")
    assert with_port.attributes["server.address"] == "shop.example"
    assert with_port.attributes["server.port"] == int(port)
    assert with_port.attributes["url.scheme"] == "http"
    assert default.attributes["server.address"] == "shop.example"
    assert default.attributes["server.port"] == 80
