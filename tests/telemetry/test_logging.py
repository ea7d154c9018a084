"""Log lines: valid JSON with the ids, plain text on request, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import MULTIPROC_ENV
from tests.telemetry.helpers import json_lines

TOKEN = "Token 9f8e7d6c5b4a39281706f5e4d3c2b1a0"
COOKIE = "sessionid=s3cr3t-cookie-value; csrftoken=csrf-value-123"


@pytest.fixture
def make(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    made = []

    def build(**kw) -> tuple[Telemetry, io.StringIO]:
        stream = io.StringIO()
        t = Telemetry(TelemetryConfig(**kw), log_stream=stream)
        made.append(t)
        return t, stream

    root = logging.getLogger()
    level = root.level
    yield build
    access = logging.getLogger("strangler.access")
    for logger in (root, access):
        for h in [h for h in logger.handlers if getattr(h, "_strangler_handler", False)]:
            logger.removeHandler(h)
    access.propagate = True
    root.setLevel(level)


def test_one_json_line_per_request_with_the_fields(make):
    t, out = make()
    t.request_finished(
        "customers",
        "canary",
        "extracted",
        "GET",
        200,
        0.0123456,
        512,
        upstream="customers",
        request_id="req-12345678",
        tenant="acme",
        path="/api/customers/17",
        query="page=2",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    (line,) = json_lines(out)
    assert line["msg"] == "request"
    assert line["level"] == "info"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    expected = {
        "request_id": "req-12345678",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "route": "customers",
        "mode": "canary",
        "side": "extracted",
        "upstream": "customers",
        "method": "GET",
        "path": "/api/customers/17",
        "query": "page=2",
        "status": 200,
        "bytes_out": 512,
        "tenant": "acme",
    }
    assert {k: line[k] for k in expected} == expected
    assert line["duration_ms"] == pytest.approx(12.346, abs=0.001)


def test_errors_carry_the_same_ids_and_no_secrets(make):
    t, out = make()
    try:
        raise RuntimeError(f"upstream said no to Authorization: {TOKEN}")
    except RuntimeError as exc:
        t.error(
            "upstream call failed",
            request_id="req-abcdefgh",
            trace_id="0af7651916cd43dd8448eb211c80319c",
            exc=exc,
            headers={"Authorization": TOKEN, "Cookie": COOKIE, "Accept": "application/json"},
        )
    (line,) = json_lines(out)
    assert line["level"] == "error"
    assert line["request_id"] == "req-abcdefgh"
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["error"] == "RuntimeError"
    assert line["headers"]["Accept"] == "application/json"
    assert line["headers"]["Authorization"] == "[REDACTED]"
    raw = out.getvalue()
    for secret in ("9f8e7d6c5b4a39281706f5e4d3c2b1a0", "s3cr3t-cookie-value", "csrf-value-123"):
        assert secret not in raw


def test_other_modules_logs_are_redacted_too(make):
    t, out = make()
    logging.getLogger("proxy.somewhere").warning(
        "retrying with headers %s", {"authorization": TOKEN, "cookie": COOKIE}
    )
    logging.getLogger("proxy.somewhere").warning("sent Cookie: %s", COOKIE)
    lines = json_lines(out)
    assert len(lines) == 2
    raw = out.getvalue()
    assert "9f8e7d6c5b4a39281706f5e4d3c2b1a0" not in raw
    assert "s3cr3t-cookie-value" not in raw
    assert "csrf-value-123" not in raw
    assert "retrying with headers" in lines[0]["msg"]


def test_configured_fields_are_redacted(make):
    t, out = make(redact=("email_addr", "X-Partner-Key"))
    t.error(
        "validation failed",
        request_id="req-00000001",
        body={"cust_nm": "DOE, Jane", "email_addr": "jane@example.com"},
        headers={"x-partner-key": "pk-live-777"},
    )
    t.request_finished(
        "customers", "legacy", "legacy", "GET", 200, 0.001, 1, query="email_addr=jane%40example.com"
    )
    raw = out.getvalue()
    assert "jane@example.com" not in raw and "jane%40example.com" not in raw
    assert "pk-live-777" not in raw
    err, access = json_lines(out)
    assert err["body"]["cust_nm"] == "DOE, Jane"
    assert err["body"]["email_addr"] == "[REDACTED]"
    assert access["query"] == "email_addr=[REDACTED]"


def test_reload_updates_redaction_and_format(make):
    from tests.telemetry.helpers import make_config

    t, out = make()
    t.error("x", body={"email_addr": "a@b.example"})
    assert "a@b.example" in out.getvalue()
    out.truncate(0)
    out.seek(0)
    t.reconfigure(make_config(telemetry=TelemetryConfig(redact=("email_addr",), log_format="text")))
    t.error("x", body={"email_addr": "a@b.example"})
    assert "a@b.example" not in out.getvalue()
    assert not out.getvalue().startswith("{")


def test_text_format_is_one_readable_line(make):
    t, out = make(log_format="text")
    t.request_finished(
        "customers",
        "legacy",
        "legacy",
        "GET",
        404,
        0.002,
        33,
        request_id="req-text0001",
        path="/api/customers/99",
        tenant='acme corp"',
    )
    text = out.getvalue()
    assert text.count("\n") == 1
    assert " INFO  strangler.access request " in text
    assert "status=404" in text and "request_id=req-text0001" in text
    assert 'tenant="acme corp\\""' in text  # quoted, so it cannot fake another field
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_unknown_log_format_names_the_field(make):
    with pytest.raises(ValueError, match="telemetry.log_format.*'xml'.*json.*text"):
        make(log_format="xml")


def test_the_handlers_exchange_record_feeds_log_and_metrics(make):
    from dataclasses import dataclass

    from tests.telemetry.helpers import make_config

    @dataclass
    class Exchange:  # the fields proxy.handler.Exchange carries
        request_id: str
        method: str
        path: str
        route: object
        side: str = "legacy"
        upstream: str = ""
        status: int = 0
        bytes_out: int = 0
        tenant: str | None = None
        fallback_reason: str | None = None

    t, out = make()
    route = make_config().routes[0]
    t.request_started()
    t.exchange_finished(
        Exchange(
            "req-exchange1",
            "GET",
            "/api/customers/3",
            route,
            "legacy",
            "legacy",
            200,
            99,
            "acme",
            "status 503",
        ),
        0.05,
    )
    t.request_started()
    t.exchange_finished(Exchange("req-exchange2", "GET", "/nowhere", None, status=404), 0.001)
    first, second = json_lines(out)
    assert first["route"] == "customers" and first["mode"] == "extracted"
    assert first["fallback"] == "status 503" and first["bytes_out"] == 99
    assert second["route"] == "default" and second["upstream"] is None
    text = t.metrics_text().decode()
    assert 'route="customers"' in text and 'route="default"' in text


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_fast_and_slow_access_paths_write_the_same_line(make, log_format):
    t, out = make(log_format=log_format)
    args = ("customers", "legacy", "legacy", "GET", 200, 0.004, 12)
    kw = {"request_id": "req-same0001", "path": "/api/customers/1", "tenant": "acme corp"}
    t.request_finished(*args, **kw)  # fast path: our handler only
    access = logging.getLogger("strangler.access")
    extra = logging.StreamHandler(io.StringIO())
    access.addHandler(extra)  # a second handler: the record-building path
    try:
        t.request_finished(*args, **kw)
    finally:
        access.removeHandler(extra)
    fast, slow = out.getvalue().splitlines()
    strip_ts = (
        (lambda line: line[line.index(",") :])
        if log_format == "json"
        else (lambda line: line.split(" ", 1)[1])
    )
    assert strip_ts(fast) == strip_ts(slow)
    assert extra.stream.getvalue() == "request\n"  # the other handler got the record too


@pytest.mark.parametrize(
    "values",
    [
        ("r1", None, "default", "legacy", "legacy", None, "GET", None, 200, 0.1, 0, None),
        ("r2", "0af7", "a b", "canary", "extracted", "up", "POST", "/p;x=1", 502, 12.345, 9, "t"),
        ('é\u2028"\\', "\x00\n", "ü", "m", "s", "ü", "GET", "/ä", 404, 1e-05, 7, "ß"),
        ("r3", None, "d", "m", "s", None, "GET", "/", 200, 123456789.0, 10**20, None),
    ],
)
@pytest.mark.parametrize(
    "extras",
    [
        (None, None, None, None, None),
        ("a=1&b=é", 12, "10.0.0.1", "status 503", "ValueError"),
        (None, 0, None, "timeout", None),
        ("q", None, "", None, 'upstream said "no"\n'),
    ],
)
def test_direct_json_access_fields_are_the_encoders_bytes(values, extras):
    """`json_access_fields` writes what `_json_encode` writes for the dict
    `request_finished` builds (the fast path skips the dict)."""
    from proxy.telemetry.logging import _json_encode, json_access_fields

    keys = ("request_id", "trace_id", "route", "mode", "side", "upstream", "method", "path")
    keys += ("status", "duration_ms", "bytes_out", "tenant")
    fields = dict(zip(keys, values, strict=True))
    for name, value in zip(
        ("query", "bytes_in", "client", "fallback", "error"), extras, strict=True
    ):
        if value is not None:
            fields[name] = value
    assert json_access_fields(*values, *extras) == _json_encode(fields)


@pytest.mark.parametrize(
    "odd",
    [{"status": True}, {"status": 200.0}, {"duration_ms": float("nan")}, {"bytes_in": "12"}],
)
def test_direct_json_access_fields_leave_odd_values_to_the_encoder(odd):
    from proxy.telemetry.logging import json_access_fields

    values = dict(status=200, duration_ms=0.5, bytes_out=1, bytes_in=None, route="r")
    values.update(odd)
    args = ("id", None, values["route"], "m", "s", None, "GET", "/", values["status"])
    args += (values["duration_ms"], values["bytes_out"], None, None, values["bytes_in"])
    assert json_access_fields(*args, None, None, None) is None
    # ... and text that is not a string is too
    assert (
        json_access_fields(
            "id",
            None,
            7,
            "m",
            "s",
            None,
            "GET",
            "/",
            200,
            0.5,
            1,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        is None
    )


def test_odd_access_values_still_log_the_encoders_line(make):
    t, out = make()
    t.request_finished("customers", "legacy", "legacy", "GET", True, 0.004, 12, tenant=7)
    (line,) = json_lines(out)
    assert line["status"] is True and line["tenant"] == 7


def test_access_lines_can_be_silenced_without_losing_errors(make):
    t, out = make()
    access = logging.getLogger("strangler.access")
    access.setLevel(logging.WARNING)
    try:
        t.request_finished("customers", "legacy", "legacy", "GET", 200, 0.001, 1)
        t.error("boom", request_id="req-boom0001")
    finally:
        access.setLevel(logging.NOTSET)
    (line,) = json_lines(out)
    assert line["msg"] == "boom" and line["request_id"] == "req-boom0001"


def test_throttled_warnings_say_how_many_were_held_back(monkeypatch, caplog):
    import logging

    from proxy.telemetry import logging as tlog

    clock = iter([0.0, 1.0, 2.0, 3.0, 11.0, 11.5])
    monkeypatch.setattr(tlog.time, "monotonic", lambda: next(clock))
    warnings = tlog.ThrottledWarnings(logging.getLogger("test.throttle"), every=10.0)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for i in range(4):  # t=0 logged; 1, 2, 3 held back
            warnings.warn("route-a", "upstream down (request %s)", i)
        warnings.warn("route-a", "upstream down (request %s)", 4)  # t=11: logged, says 3
        warnings.warn("route-b", "other (request %s)", 5)  # another key: its own budget
    assert [r.getMessage() for r in caplog.records] == [
        "upstream down (request 0)",
        "upstream down (request 4) (and 3 more like it in the last 11s)",
        "other (request 5)",
    ]


def dead_upstream_routes(tmp_path, extra: str = "") -> tuple[Path, int, int]:
    """A routes.yaml whose only upstream is a closed port (no retries): every request is a
    502 and a warning. Returns the file, the proxy's port and the admin port."""
    from tests.support.procs import free_port

    dead, port, admin = free_port(), free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        f"""version: 1
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin}}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{dead}", retry: {{retries: 0}}}}
default: legacy
routes: []
"""
        + extra
    )
    return config, port, admin


@pytest.mark.parametrize("traced", [False, True], ids=["exporter-none", "exporter-otlp"])
def test_a_failing_upstreams_warning_line_carries_the_requests_ids(tmp_path, traced):
    """A real proxy in front of a closed port: the warning about the 502 has the same
    `request_id` and `trace_id` fields as the request's access line (with tracing off, the
    trace id of the client's `traceparent`), not only the request id inside its message."""
    import subprocess

    import httpx

    from tests.support.procs import PYTHON, running
    from tests.telemetry.otlp_sink import otlp_sink

    config, port, admin = dead_upstream_routes(tmp_path, "telemetry: {log_format: json}\n")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    out = tmp_path / "stdout"
    with otlp_sink() as (collector, _), out.open("w") as stdout:
        if traced:
            traces = f"traces: {{exporter: otlp, endpoint: '{collector}', sample: 1.0}}, "
            config.write_text(
                config.read_text().replace("{log_format", "{" + traces + "log_format")
            )
        with running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            stdout=stdout,
            stderr=subprocess.STDOUT,
        ):
            resp = httpx.get(
                f"http://127.0.0.1:{port}/x",
                headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
                timeout=10,
            )
            assert resp.status_code == 502
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    (access,) = [x for x in lines if x["logger"] == "strangler.access"]
    (warning,) = [x for x in lines if x["level"] == "warning" and "unreachable" in x["msg"]]
    assert access["trace_id"] == trace  # the client's trace: joined, or continued by the span
    assert warning["request_id"] == access["request_id"] == resp.headers["X-Request-ID"]
    assert warning["trace_id"] == access["trace_id"]


def test_strangler_log_level_quiets_request_lines_but_keeps_warnings(make, monkeypatch):
    """docs/operations.md: `STRANGLER_LOG_LEVEL` sets the root level, the operator's way to
    drop request lines without code. It was read once and then lost when `Telemetry` took
    over the logging setup: every level but INFO was ignored."""
    monkeypatch.setenv("STRANGLER_LOG_LEVEL", "warning")
    t, out = make()
    t.request_finished("customers", "legacy", "legacy", "GET", 200, 0.001, 1)
    logging.getLogger("strangler").info("listening")
    logging.getLogger("strangler").warning("upstream down")
    t.error("boom", request_id="req-boom0002")
    assert [line["msg"] for line in json_lines(out)] == ["upstream down", "boom"]


def test_an_unknown_strangler_log_level_stops_serve_naming_the_variable(tmp_path):
    import subprocess

    from tests.support.procs import PYTHON, ROOT, free_port

    config = tmp_path / "routes.yaml"
    config.write_text(
        f"""version: 1
listen: {{host: 127.0.0.1, port: {free_port()}}}
admin: {{host: 127.0.0.1, port: {free_port()}}}
upstreams:
  legacy: {{url: "http://127.0.0.1:{free_port()}"}}
routes: []
"""
    )
    done = subprocess.run(
        [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
        env={**os.environ, "STRANGLER_LOG_LEVEL": "LOUD"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "STRANGLER_LOG_LEVEL='LOUD' is not a log level" in done.stderr
    assert "WARNING" in done.stderr


def test_a_real_proxy_at_strangler_log_level_warning_logs_no_request_lines(tmp_path):
    """A real proxy in front of a closed port, run as an operator would run it quietly: the
    502's warning is logged, its access line and the startup info lines are not."""
    import subprocess

    import httpx

    from tests.support.procs import PYTHON, running

    config, port, admin = dead_upstream_routes(tmp_path)
    out = tmp_path / "stdout"
    with (
        out.open("w") as stdout,
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            env={"STRANGLER_LOG_LEVEL": "WARNING"},
            stdout=stdout,
            stderr=subprocess.STDOUT,
        ),
    ):
        assert httpx.get(f"http://127.0.0.1:{port}/x", timeout=10).status_code == 502
    # `running` stopped the proxy: every line it meant to write is in the file now.
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    assert [x for x in lines if "unreachable" in x["msg"]], lines
    assert {x["level"] for x in lines} <= {"warning", "error", "critical"}, lines
    assert not [x for x in lines if x["logger"] == "strangler.access"]
