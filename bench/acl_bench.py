"""What the ACL adds per request: a 50-customer list page and a single customer.

`python bench/acl_bench.py` (also run by `make bench`). Times the whole round the proxy does:
request_to_new + response_to_legacy on parsed JSON, and separately the wire variant that
also parses and serializes the body bytes. Target: < 1 ms for the page.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acl import RequestMessage, ResponseMessage, load_translators  # noqa: E402
from acl.wire import request_message, translate_request, translate_response  # noqa: E402

TARGET_PAGE_MS = 1.0


def legacy_customer(i: int) -> dict:
    return {
        "cust_id": i,
        "cust_nm": f"FAMILY{i}, Given{i}",
        "email_addr": f"given{i}@example.com",
        "phone_no": f"555-{i:04d}",
        "addr_line1": f"{i} Main St",
        "addr_city": "Springfield",
        "addr_zip": f"{10000 + i}",
        "status_cd": "A" if i % 3 else "I",
        "created_ts": f"2024{1 + i % 12:02d}{1 + i % 28:02d}030405",
        "tenant_id": "acme",
    }


def measure(fn, rounds: int) -> tuple[float, float]:
    """(median, p99) in milliseconds over `rounds` calls after a warm-up."""
    for _ in range(min(200, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> int:
    t = load_translators()["customers"]
    items = [t.to_new(legacy_customer(i)) for i in range(1, 51)]
    page_body = {"items": items, "next_cursor": "eyJvZmZzZXQiOjEwMH0", "total_count": 1000}
    one = items[0]
    list_req = RequestMessage(
        "GET", "/api/customers", (("page", "2"), ("page_size", "50"), ("status", "A"),
                                  ("ordering", "-name")), (("x-tenant-id", "acme"),)
    )  # fmt: skip
    one_req = RequestMessage("GET", "/api/customers/1", (), (("x-tenant-id", "acme"),))

    def page() -> None:
        t.request_to_new(list_req, {})
        t.response_to_legacy(ResponseMessage(200, (), page_body), list_req)

    def single() -> None:
        t.request_to_new(one_req, {"id": "1"})
        t.response_to_legacy(ResponseMessage(200, (), one), one_req)

    json_headers = (("content-type", "application/json"),)
    page_raw = json.dumps(page_body).encode()
    one_raw = json.dumps(one).encode()
    wire_list = request_message("GET", "/api/customers", "page=2&page_size=50&status=A", (), b"")
    wire_one = request_message("GET", "/api/customers/1", "", (), b"")

    def page_wire() -> None:
        translate_request(t, "GET", "/api/customers", "page=2&page_size=50&status=A", (), b"")
        translate_response(t, 200, json_headers, page_raw, wire_list)

    def single_wire() -> None:
        translate_request(t, "GET", "/api/customers/1", "", (), b"")
        translate_response(t, 200, json_headers, one_raw, wire_one)

    rows = [
        ("list page, 50 customers", page, 2000),
        ("single customer", single, 20000),
        ("list page, 50 customers, with JSON bytes", page_wire, 2000),
        ("single customer, with JSON bytes", single_wire, 20000),
    ]
    print(f"ACL cost per request (customers translator, Python {sys.version.split()[0]})")
    print(f"{'case':<44} {'median ms':>10} {'p99 ms':>10}")
    page_median = None
    for label, fn, rounds in rows:
        median, p99 = measure(fn, rounds)
        if page_median is None:
            page_median = median
        print(f"{label:<44} {median:>10.3f} {p99:>10.3f}")
    verdict = "meets" if page_median < TARGET_PAGE_MS else "MISSES"
    print(f"page target < {TARGET_PAGE_MS} ms: {verdict} ({page_median:.3f} ms median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
