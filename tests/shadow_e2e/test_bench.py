"""bench/shadow_bench.py runs end to end (short), and its shadow accounting adds up."""

from __future__ import annotations

import importlib.util

from tests.support.procs import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "shadow_bench", ROOT / "bench" / "shadow_bench.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_shadow_bench_measures_both_routes_and_accounts_for_every_request():
    bench = load_bench()
    result = bench.run(rounds=1, duration="1s", paced_rate=80, paced_seconds=1)
    assert result["rps"]["legacy"] > 0 and result["rps"]["shadow"] > 0
    assert result["ratio"] == result["rps"]["shadow"] / result["rps"]["legacy"]
    # saturated: every shadow-route request was compared, dropped or queued (wrk may stop
    # with up to one request per connection unanswered)
    settled = result["compared"] + result["dropped"] + result["pending"]
    assert abs(settled - result["shadow_requests"]) <= result["connections"]
    assert result["results"].get("match", 0) > 0 and set(result["results"]) == {"match"}
    # paced far below saturation, within the queue's bound: every request is compared
    assert result["paced"]["shadow"]["ok"] > 0
    assert result["paced_compared"] == result["paced"]["shadow"]["ok"]
    text = bench.render(result)
    assert "shadow / legacy" in text and "paced at 80 requests/s" in text
