"""A separate process that writes shadow records through a real store (for restart and
multi-replica tests): python -m tests.shadow.writer_proc URL ROUTE COUNT TAG"""

from __future__ import annotations

import json
import sys
import time

from proxy.shadow.model import Difference, DiffRecord
from proxy.shadow.store import open_store


def make_record(route: str, i: int, tag: str, ts: float | None = None) -> DiffRecord:
    differs = i % 2 == 0
    diffs = (
        (Difference("$.items[1].total", "$.items[*].total", "value", 10 + i, 11 + i),)
        if differs
        else ()
    )
    return DiffRecord(
        ts=time.time() if ts is None else ts,
        route=route,
        method="GET",
        endpoint="/api/things/{id}",
        request_id=f"{tag}-{i}",
        primary_status=200,
        candidate_status=200,
        primary_latency=0.010 + i / 10_000,
        candidate_latency=0.020 + i / 10_000,
        differences=diffs,
        noise=("$.trace_id",),
        body_kind="json",
        primary_body=json.dumps({"items": [{"total": 1}, {"total": 10 + i}]}) if differs else None,
        candidate_body=json.dumps({"items": [{"total": 1}, {"total": 11 + i}]})
        if differs
        else None,
    )


def main(argv: list[str]) -> int:
    url, route, count, tag = argv[0], argv[1], int(argv[2]), argv[3]
    store = open_store(url, batch_size=50)
    for i in range(count):
        if not store.add(make_record(route, i, tag)):
            print(f"dropped record {i}", file=sys.stderr)
            return 1
    store.close()
    return 0 if store.written == count else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
