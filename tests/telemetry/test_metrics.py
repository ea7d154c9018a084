"""Prometheus metrics: counters move, labels stay bounded, several processes add up."""

from __future__ import annotations

import math
import os
import subprocess
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import (
    MULTIPROC_ENV,
    Metrics,
    method_label,
    samples_from_text,
    status_class,
)
from tests.support.procs import PYTHON, ROOT
from tests.telemetry.helpers import make_config, value


@pytest.fixture
def telemetry(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    t.reconfigure(make_config([("customers", "/api/customers/{id}", "canary")]))
    return t


def finish(t: Telemetry, side: str = "legacy", method: str = "GET", status: int = 200, d=0.02):
    t.request_started()
    t.request_finished("customers", "canary", side, method, status, d, 10)


def test_request_counters_move_by_route_mode_side_method_and_status_class(telemetry):
    before = telemetry.metrics_text()
    assert value(before, "strangler_requests_total") == 0
    finish(telemetry, "legacy", "GET", 200)
    finish(telemetry, "legacy", "GET", 204)
    finish(telemetry, "extracted", "POST", 503)
    text = telemetry.metrics_text()
    assert (
        value(
            text,
            "strangler_requests_total",
            route="customers",
            mode="canary",
            side="legacy",
            method="GET",
            status_class="2xx",
        )
        == 2
    )
    assert value(text, "strangler_requests_total", side="extracted", status_class="5xx") == 1
    assert value(text, "strangler_request_duration_seconds_count", side="legacy") == 2
    assert value(text, "strangler_request_duration_seconds_sum", side="extracted") == pytest.approx(
        0.02
    )
    # 0.02 s falls in the 0.025 bucket but not in the 0.01 one.
    assert value(text, "strangler_request_duration_seconds_bucket", side="legacy", le="0.025") == 2
    assert value(text, "strangler_request_duration_seconds_bucket", side="legacy", le="0.01") == 0
    assert value(text, "strangler_requests_in_flight") == 0


def test_in_flight_counts_requests_not_yet_finished(telemetry):
    telemetry.request_started()
    telemetry.request_started()
    assert value(telemetry.metrics_text(), "strangler_requests_in_flight") == 2
    telemetry.request_finished("customers", "canary", "legacy", "GET", 200, 0.001, 0)
    assert value(telemetry.metrics_text(), "strangler_requests_in_flight") == 1


def test_labels_stay_low_cardinality(telemetry):
    for i in range(50):
        finish(telemetry, method=f"X{i}", status=200 + i)
    text = telemetry.metrics_text().decode()
    methods = {
        labels["method"]
        for name, labels, _ in samples_from_text(text)
        if name == "strangler_requests_total"
    }
    assert methods == {"OTHER"}
    classes = {
        labels["status_class"]
        for name, labels, _ in samples_from_text(text)
        if name == "strangler_requests_total"
    }
    assert classes == {"2xx"}
    assert "X7" not in text


def test_method_and_status_helpers():
    assert method_label("GET") == "GET"
    assert method_label("get") == "OTHER"  # methods are case-sensitive tokens
    assert method_label("PROPFIND") == "OTHER"
    assert status_class(101) == "1xx"
    assert status_class(404) == "4xx"
    assert status_class(599) == "5xx"
    assert status_class(0) == "0xx"
    assert status_class(999) == "0xx"


def test_unmatched_requests_are_labelled_default(telemetry):
    telemetry.request_started()
    telemetry.request_finished(None, "legacy", "legacy", "GET", 404, 0.003, 5)
    assert value(telemetry.metrics_text(), "strangler_requests_total", route="default") == 1


def test_events_count_with_their_labels(telemetry):
    t = telemetry
    t.count("retry", upstream="customers", reason="status_503")
    t.count("retry", upstream="customers", reason="status_503")
    t.count("fallback", route="customers", reason="timeout")
    t.count("rejection", upstream="customers", reason="bulkhead_full")
    t.count("shadow_comparison", route="customers", result="match")
    t.count("shadow_comparison", route="customers", result="mismatch")
    t.count("shadow_drop", route="customers", reason="queue_full")
    t.breaker_changed("customers", "closed", "open")
    t.attempt_finished(None, "customers", 200)
    t.attempt_finished(None, "customers", None, error=TimeoutError())
    t.attempt_finished(None, "customers", 502)
    text = t.metrics_text()
    assert value(text, "strangler_upstream_retries_total", reason="status_503") == 2
    assert value(text, "strangler_fallbacks_total", route="customers", reason="timeout") == 1
    assert value(text, "strangler_upstream_rejections_total", reason="bulkhead_full") == 1
    assert value(text, "strangler_shadow_comparisons_total", result="mismatch") == 1
    assert value(text, "strangler_shadow_dropped_total", reason="queue_full") == 1
    assert value(text, "strangler_breaker_transitions_total", to_state="open") == 1
    assert value(text, "strangler_breaker_state", upstream="customers") == 2
    assert value(text, "strangler_upstream_attempts_total", result="ok") == 1
    assert value(text, "strangler_upstream_attempts_total", result="timeout") == 1
    assert value(text, "strangler_upstream_attempts_total", result="http_5xx") == 1


def test_unknown_event_or_wrong_labels_say_what_is_wrong(telemetry):
    with pytest.raises(KeyError, match="unknown telemetry event 'retries'.*retry"):
        telemetry.metrics.count("retries", upstream="x")
    with pytest.raises(ValueError, match=r"takes labels \['upstream', 'reason'\]"):
        telemetry.metrics.count("retry", upstream="x")


def test_a_bad_event_never_fails_the_request_and_is_logged_once(telemetry, caplog):
    with caplog.at_level("ERROR", logger="strangler.errors"):
        telemetry.count("retries", upstream="x")
        telemetry.count("retries", upstream="x")
        telemetry.count("retry", upstream="x")  # missing label
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unknown telemetry event 'retries'" in messages[0]
    assert "takes labels ['upstream', 'reason']" in messages[1]
    telemetry.count("retry", upstream="x", reason="timeout")  # valid ones still count
    assert value(telemetry.metrics_text(), "strangler_upstream_retries_total") == 1


def test_reloads_are_counted_and_remembered(telemetry):
    telemetry.reload_finished(True, version=2, at=100.0)
    telemetry.reload_finished(False, error="routes.yaml:3: routes[0].mode: bad", at=101.0)
    text = telemetry.metrics_text()
    assert value(text, "strangler_config_reloads_total", result="ok") == 1
    assert value(text, "strangler_config_reloads_total", result="failed") == 1
    assert [r["ok"] for r in telemetry.reloads()] == [False, True]  # newest first
    assert value(text, "strangler_config_version") == 1


def test_reconfigure_rebinds_a_route_whose_mode_changed(telemetry):
    finish(telemetry)
    telemetry.reconfigure(
        make_config([("customers", "/api/customers/{id}", "extracted")], version=2)
    )
    telemetry.request_started()
    telemetry.request_finished("customers", "extracted", "extracted", "GET", 200, 0.01, 1)
    text = telemetry.metrics_text()
    assert value(text, "strangler_requests_total", mode="canary") == 1
    assert value(text, "strangler_requests_total", mode="extracted") == 1
    assert value(text, "strangler_config_version") == 2


def test_metrics_off_costs_nothing_and_serves_nothing(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(metrics=False), configure_logs=False)
    t.request_started()
    t.request_finished("r", "legacy", "legacy", "GET", 200, 0.01, 1)
    t.count("retry", upstream="x", reason="y")
    assert t.metrics is None
    assert t.metrics_text() == b""


WRITER = textwrap.dedent(
    """
    import sys
    from proxy.config.model import TelemetryConfig
    from proxy.telemetry import Telemetry
    from tests.telemetry.helpers import make_config, value

    n = int(sys.argv[1])
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    t.reconfigure(make_config([("customers", "/api/customers/{id}", "canary")]))
    for _ in range(n):
        t.request_started()
        t.request_finished("customers", "canary", "legacy", "GET", 200, 0.004, 10)
    t.count("retry", upstream="customers", reason="timeout")
    t.request_started()  # left in flight while this worker lives
    print("ready", flush=True)
    sys.stdin.readline()  # stay alive until the test says so
    """
)


def test_two_worker_processes_are_served_together(tmp_path, monkeypatch):
    """Two real processes write, a third object (this test) reads the merged figures."""
    from proxy.telemetry.metrics import mark_worker_dead, prepare_multiprocess_dir

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    import prometheus_client.values as pv

    saved = pv.ValueClass
    directory = prepare_multiprocess_dir(str(tmp_path / "mp"))
    procs = []
    try:
        env = {**os.environ, MULTIPROC_ENV: directory, "PYTHONPATH": str(ROOT)}
        for n in (3, 5):
            p = subprocess.Popen(
                [PYTHON, "-c", WRITER, str(n)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(p)
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        reader = Metrics()
        assert reader.multiprocess_dir == directory
        text = reader.text()
        assert value(text, "strangler_requests_total", route="customers", side="legacy") == 8
        assert value(text, "strangler_request_duration_seconds_count") == 8
        assert value(text, "strangler_upstream_retries_total", reason="timeout") == 2
        assert value(text, "strangler_requests_in_flight") == 2
        # A worker exits: its counts stay (they happened), its live gauges go.
        procs[0].stdin.write("\n")
        procs[0].stdin.flush()
        procs[0].wait(10)
        mark_worker_dead(procs[0].pid)
        text = reader.text()
        assert value(text, "strangler_requests_total") == 8
        assert value(text, "strangler_requests_in_flight") == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.write("\n")
                p.stdin.flush()
                p.wait(10)
        pv.ValueClass = saved
        # Not monkeypatch.delenv: it would record the directory and put it back at teardown,
        # and every process later tests start would share this test's metric files.
        os.environ.pop(MULTIPROC_ENV, None)


def test_finishing_without_starting_never_makes_in_flight_negative(telemetry):
    telemetry.request_finished("customers", "canary", "legacy", "GET", 200, 0.001, 0)
    telemetry.request_finished("customers", "canary", "legacy", "GET", 200, 0.001, 0)
    text = telemetry.metrics_text()
    assert value(text, "strangler_requests_in_flight") == 0
    assert value(text, "strangler_requests_total") == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from([200, 404, 503]),
            st.floats(min_value=0.0, max_value=120.0, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_tallies_read_as_the_same_exposition_as_writing_through(requests):
    """A single process tallies in plain dicts and hands the sums to prometheus-client when
    scraped; the exposition must be exactly what observing every request would give,
    bucket boundaries (value == upper bound) included."""
    deferred, direct = Metrics(), Metrics()
    deferred._defer, direct._defer = True, False
    bounds = [0.001, 0.0025, 60.0]  # values exactly on a bucket's upper bound
    extra = [("a", 200, b) for b in bounds]
    for route, status, seconds in requests + extra:
        for m in (deferred, direct):
            m.finished(route, "legacy", "legacy", "GET", status, seconds)
            m.count("upstream_attempt", upstream="legacy", result=f"{status // 100}xx")
    assert same_exposition(deferred.text(), direct.text())
    deferred.finished("a", "legacy", "legacy", "GET", 200, 0.5)  # later requests count too
    direct.finished("a", "legacy", "legacy", "GET", 200, 0.5)
    assert same_exposition(deferred.text(), direct.text())


def same_exposition(a: bytes, b: bytes) -> bool:
    """Equal, but for the last bits of `_sum`s: tallies per status add the same durations
    in another grouping, and float addition is not associative."""
    one, two = a.decode().splitlines(), b.decode().splitlines()
    assert len(one) == len(two), (one, two)
    for x, y in zip(one, two, strict=True):
        if x != y:
            (name_x, vx), (name_y, vy) = x.rsplit(" ", 1), y.rsplit(" ", 1)
            assert name_x == name_y and "_sum{" in name_x, (x, y)
            assert math.isclose(float(vx), float(vy), rel_tol=1e-12), (x, y)
    return True


def test_attempt_results_name_what_happened():
    """`connect_error` for a connection never made, whichever way it failed (the proxy's
    own client raises `ConnectFailed`, which is no `ConnectionError`)."""
    from proxy.client import ConnectFailed, UpstreamTimeout
    from proxy.telemetry.core import attempt_result

    assert attempt_result(None, ConnectFailed("connect to 127.0.0.1:1 failed")) == "connect_error"
    assert attempt_result(None, ConnectionRefusedError()) == "connect_error"
    assert attempt_result(None, UpstreamTimeout("read")) == "timeout"
    assert attempt_result(None, "cancelled") == "error"
    assert attempt_result(503) == "http_5xx" and attempt_result(200) == "ok"
