"""Reports: aggregation with noise, text/JSON via the CLI, Redis replicas, config lookup."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid

import pytest
import redis

from proxy.shadow.cli import parse_since
from proxy.shadow.model import Difference, DiffRecord
from proxy.shadow.report.build import build_report, percentile
from proxy.shadow.report.text import render_text
from proxy.shadow.store import SQLiteStore
from tests.shadow.writer_proc import make_record
from tests.support.procs import PYTHON, ROOT


def rec(i, *, route="customers", endpoint="/api/customers/{id}", diffs=(), noise=None, ts=None):
    return DiffRecord(
        ts=1_700_000_000.0 + i if ts is None else ts,
        route=route,
        method="GET",
        endpoint=endpoint,
        request_id=f"r{i}",
        primary_status=200,
        candidate_status=200,
        primary_latency=(i + 1) / 1000,
        candidate_latency=2 * (i + 1) / 1000,
        differences=tuple(diffs),
        noise=noise,
        body_kind="json",
        primary_body='{"a": 1}' if diffs else None,
        candidate_body='{"a": 2}' if diffs else None,
    )


def d(path, field=None, kind="value", p=1, c=2):
    return Difference(path, field or path, kind, p, c)


def test_noise_fields_are_reported_separately_and_do_not_cost_matches():
    records = []
    for i in range(100):
        diffs = [d("$.trace_id", p=f"t{i}", c=f"u{i}")]
        if i % 4 == 0:
            diffs.append(d(f"$.items[{i % 3}].price", "$.items[*].price", p=i, c=i + 1))
        records.append(rec(i, diffs=diffs, noise=("$.trace_id",)))
    report = build_report(records)
    (ep,) = report["endpoints"]
    assert (ep["route"], ep["method"], ep["endpoint"]) == (
        "customers",
        "GET",
        "/api/customers/{id}",
    )
    assert ep["samples"] == 100 and ep["noise_samples"] == 100
    assert ep["matches"] == 75 and ep["match_rate"] == 0.75
    assert ep["noise"] == ["$.trace_id"]
    (field,) = ep["fields"]
    assert field["path"] == "$.items[*].price" and field["count"] == 25
    assert field["verdict"] == "failure" and field["kinds"] == {"value": 25}
    assert field["example"] == {
        "primary": 0,
        "candidate": 1,
        "kind": "value",
        "path": "$.items[0].price",
        "request_id": "r0",
    }
    assert len(field["examples"]) == 5
    assert ep["latency_ms"]["primary"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert ep["latency_ms"]["candidate"]["p50"] == 100.0
    assert report["totals"] == {"samples": 100, "matches": 75, "match_rate": 0.75}
    assert report["routes"] == [
        {"route": "customers", "samples": 100, "matches": 75, "endpoints": 1, "match_rate": 0.75}
    ]
    assert len(ep["pairs"]) == 5
    assert all("$.items[*].price" in {x["field"] for x in p["differences"]} for p in ep["pairs"])


def test_without_noise_samples_every_difference_counts():
    records = [rec(i, diffs=[d("$.trace_id")] if i < 3 else []) for i in range(10)]
    (ep,) = build_report(records)["endpoints"]
    assert ep["matches"] == 7 and ep["fields"][0]["path"] == "$.trace_id"
    assert ep["noise"] == [] and ep["noise_samples"] == 0


def test_rare_differences_are_below_threshold_and_match():
    records = [rec(i, diffs=[d("$.x")] if i == 0 else []) for i in range(10_000)]
    (ep,) = build_report(records)["endpoints"]
    assert ep["matches"] == 10_000
    assert ep["fields"][0]["verdict"] == "below_threshold"
    (ep,) = build_report(records, absolute=0.00001)["endpoints"]
    assert ep["matches"] == 9_999


def test_a_field_differing_in_many_elements_counts_once_per_sample_by_kind_too():
    """`count`, `kinds` and `examples` are per sample, as `samples` and `matches` are: a
    page whose three prices differ is one sample with a differing price, not three."""
    page = [d(f"$.items[{i}].price", "$.items[*].price", p=i, c=i + 1) for i in range(3)]
    gone = d("$.items[2].price", "$.items[*].price", kind="missing", c=None)
    records = [rec(0, diffs=page), rec(1, diffs=[*page[:2], gone]), rec(2)]
    (ep,) = build_report(records)["endpoints"]
    (price,) = ep["fields"]
    assert (ep["samples"], ep["matches"], price["count"]) == (3, 1, 2)
    assert price["kinds"] == {"value": 2, "missing": 1}
    assert [e["request_id"] for e in price["examples"]] == ["r0", "r1"]


def test_grouping_and_filters():
    records = [
        rec(1, route="a", endpoint="/x/{id}"),
        rec(2, route="a", endpoint="/y"),
        rec(3, route="b", endpoint="/x/{id}", diffs=[d("status", kind="value", p=200, c=500)]),
        rec(4, route="a", endpoint="/x/{id}", ts=10.0),
    ]
    report = build_report(records)
    assert [(e["route"], e["endpoint"], e["samples"]) for e in report["endpoints"]] == [
        ("a", "/x/{id}", 2),
        ("a", "/y", 1),
        ("b", "/x/{id}", 1),
    ]
    only_b = build_report(records, routes=["b"])
    assert [e["route"] for e in only_b["endpoints"]] == ["b"]
    assert only_b["endpoints"][0]["fields"][0]["path"] == "status"
    recent = build_report(records, since=1_000.0)
    assert sum(e["samples"] for e in recent["endpoints"]) == 3
    assert recent["filters"]["since"] == "1970-01-01T00:16:40Z"


def test_percentile_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.95) == 95


def test_text_rendering():
    records = [rec(i, diffs=[d("$.total", p=i, c=i + 1)]) for i in range(3)]
    text = render_text(build_report(records))
    assert "customers  GET /api/customers/{id}" in text
    assert "samples 3  matches 0 (0.0%)" in text
    assert "$.total" in text and "0 -> 1" in text
    assert "No comparisons recorded" in render_text(build_report([]))


def test_text_report_escapes_control_characters_from_stored_values():
    """Values come from upstream answers: a newline must not break the table, and an escape
    sequence (clear screen, colours, carriage return overwriting the line) must not reach
    the reader's terminal."""
    hostile = "\x1b[2J\x1b[31mALL GOOD\rfake\x9b1m"
    records = [
        rec(0, diffs=[d("$.note", p="line one\nline two", c=hostile), d("line:3", p="a\tb")]),
        rec(1, diffs=[d('$["k\x1b[0m"]', p=1, c=2)], noise=("$.t\x07",)),
    ]
    text = render_text(build_report(records))
    assert not any(ch in text for ch in "\x1b\r\t\x07\x9b"), repr(text)
    assert "line one\\nline two -> \\u001b[2J\\u001b[31mALL GOOD\\rfake" in text
    assert '$["k\\u001b[0m"]' in text and "$.t\\u0007" in text
    assert all(
        line.startswith(("Shadow", "1", "2", " ", "customers")) or not line
        for line in text.splitlines()
    )  # every line is one of the report's own


def test_parse_since():
    now = 1_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1.5d", now) == now - 1.5 * 86400
    assert parse_since("2026-01-01T00:00:00Z") == parse_since("2026-01-01T00:00:00")
    assert parse_since("12345") == 12345.0
    with pytest.raises(Exception, match="duration like 30m"):
        parse_since("yesterday")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "proxy.shadow.cli", "report", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_json_contract_from_a_sqlite_store(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    store.write([make_record("orders", i, "x") for i in range(10)])
    store.write([make_record("customers", i, "y") for i in range(4)])
    store.close()
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = cli("--store", url, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    eps = {e["route"]: e for e in report["endpoints"]}
    assert set(eps) == {"orders", "customers"}
    orders = eps["orders"]
    for key in (
        "route",
        "method",
        "endpoint",
        "samples",
        "matches",
        "match_rate",
        "fields",
        "noise",
    ):
        assert key in orders
    assert orders["samples"] == 10 and orders["matches"] == 5 and orders["match_rate"] == 0.5
    (field,) = orders["fields"]
    assert field["path"] == "$.items[*].total" and field["count"] == 5
    assert set(field["example"]) >= {"primary", "candidate"}
    # the two primaries disagreed on trace_id: listed as noise, never as a candidate failure
    assert orders["noise"] == ["$.trace_id"]
    assert orders["noise_detail"] == [{"path": "$.trace_id", "raw": 0, "noise": 10}]

    only = json.loads(cli("--store", url, "--format", "json", "--route", "customers").stdout)
    assert [e["route"] for e in only["endpoints"]] == ["customers"]
    text = cli("--store", url, "--since", "1h")
    assert text.returncode == 0 and "orders  GET /api/things/{id}" in text.stdout
    gate = cli("--store", url, "--fail-under", "90%")
    assert gate.returncode == 3
    bad = cli("--store", url, "--since", "last tuesday")
    assert bad.returncode == 2 and "duration like 30m" in bad.stderr
    html_out = tmp_path / "r.html"
    assert cli("--store", url, "--format", "html", "-o", str(html_out)).returncode == 0
    assert "<!doctype html>" in html_out.read_text()


def test_cli_reads_the_store_named_in_routes_yaml(tmp_path):
    (tmp_path / "routes.yaml").write_text(
        "version: 1\n"
        "upstreams:\n  legacy: http://127.0.0.1:9\n  orders: http://127.0.0.1:10\n"
        "routes:\n  - name: orders\n    match:\n      prefix: /api/orders\n"
        "    mode: shadow\n    target: orders\n"
        "shadow:\n  store: sqlite:///data/diffs.db\n"
    )
    store = SQLiteStore(tmp_path / "data" / "diffs.db")
    store.write([make_record("orders", i, "z") for i in range(3)])
    store.close()
    out = cli("-c", str(tmp_path / "routes.yaml"), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["samples"] == 3
    missing = cli("-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr
    nostore = cli("--store", str(tmp_path / "none" / "x.db"))
    assert nostore.returncode == 1 and "no shadow diff store" in nostore.stderr
    assert not (tmp_path / "none").exists()  # reading never creates a store
    typo = cli("-c", str(tmp_path / "routes.yaml"), "--route", "ordres")
    assert typo.returncode == 2
    assert "no route 'ordres' in" in typo.stderr and "its routes: orders" in typo.stderr
    empty = cli("--store", str(tmp_path / "data" / "diffs.db"), "--route", "payments")
    assert empty.returncode == 0
    assert "no comparisons stored for route 'payments'" in empty.stderr


def test_cli_names_the_file_and_the_fix_when_the_store_or_the_output_is_unusable(tmp_path):
    """A damaged store, a file that is no diff store and an output path that cannot be
    written: one line naming the file and what to do, exit 1, no traceback."""
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not sqlite\n" * 300)
    out = cli("--store", str(damaged), "--format", "json")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(damaged) in out.stderr and "not a SQLite database" in out.stderr
    assert "move it aside" in out.stderr

    blank = tmp_path / "blank.db"
    blank.touch()  # an empty file is an empty SQLite database: no comparisons table
    out = cli("--store", str(blank))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(blank) in out.stderr and "not a diff store written by `strangler serve`" in (
        out.stderr
    )

    store = SQLiteStore(tmp_path / "s.db")
    store.write([make_record("orders", i, "x") for i in range(2)])
    store.close()
    target = tmp_path / "no-such-folder" / "report.html"
    out = cli("--store", str(tmp_path / "s.db"), "--format", "html", "-o", str(target))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot write -o {target}" in out.stderr and "writable path" in out.stderr


def test_two_replicas_writing_to_redis_make_one_report():
    prefix = f"strangler-test-{uuid.uuid4().hex[:12]}:"
    url = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    try:
        procs = [
            subprocess.Popen(
                [PYTHON, "-m", "tests.shadow.writer_proc", url, "customers", "60", tag],
                cwd=ROOT,
            )
            for tag in ("replica-a", "replica-b")
        ]
        for p in procs:
            assert p.wait(timeout=60) == 0
        out = cli("--store", url, "--format", "json")
        assert out.returncode == 0, out.stderr
        (ep,) = json.loads(out.stdout)["endpoints"]
        assert ep["samples"] == 120 and ep["matches"] == 60
        ids = {ex["request_id"].split("-")[1] for ex in ep["fields"][0]["examples"]}
        assert ids <= {"a", "b"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        client = redis.Redis(host="127.0.0.1", port=6379, db=0)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def test_report_since_filter_uses_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "t.db")
    store.write([make_record("r", 1, "old", ts=time.time() - 7200)])
    store.write([make_record("r", 2, "new")])
    store.close()
    out = cli("--store", str(tmp_path / "t.db"), "--format", "json", "--since", "1h")
    assert json.loads(out.stdout)["totals"]["samples"] == 1


def test_an_unsafe_method_borrows_the_noise_of_the_endpoints_safe_methods():
    """PATCH is never sent to the primary twice: without GET's noise samples its trace id
    and timestamp would count as failures (0 % match on every write endpoint)."""
    records = []
    for i in range(20):
        records.append(rec(i, diffs=[d("$.trace_id", p=i, c=-i)], noise=("$.trace_id",)))
    for i in range(20, 30):
        patch = rec(i, diffs=[d("$.trace_id", p=i, c=-i)], noise=None)
        records.append(dataclasses.replace(patch, method="PATCH"))
    report = build_report(records)
    by_method = {ep["method"]: ep for ep in report["endpoints"]}
    assert by_method["PATCH"]["noise_from"] == ["GET"] and by_method["GET"]["noise_from"] is None
    assert by_method["PATCH"]["match_rate"] == 1.0 and by_method["PATCH"]["noise"] == ["$.trace_id"]
