"""The diff benchmark runs and meets its target (>= 10x deepdiff on ~5 KB JSON pairs)."""

from __future__ import annotations

import importlib.util

from tests.support.procs import ROOT


def test_diff_bench_beats_deepdiff_tenfold():
    spec = importlib.util.spec_from_file_location("diff_bench", ROOT / "bench" / "diff_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(pairs=40, seconds=0.4)
    assert 4_000 <= result["doc_bytes"] <= 6_000
    assert result["deepdiff_pairs"] > 0 and result["strangler_pairs"] > 0
    assert result["speedup"] >= 10, result
