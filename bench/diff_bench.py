"""Diff engine throughput: pairs/second on ~5 KB JSON pairs with a few differences,
against deepdiff on the same pairs in the same run.

    .venv/bin/python bench/diff_bench.py [--pairs 200] [--seconds 2]

Both sides diff already-parsed documents (deepdiff cannot take bytes); a third figure adds
JSON parsing and the whole-response path (status, headers, body) of `Differ.compare`.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepdiff import DeepDiff  # noqa: E402

from proxy.shadow.compare import Differ, Rules  # noqa: E402
from proxy.shadow.model import CapturedResponse  # noqa: E402

JSON = (("content-type", "application/json"),)


def _customer(rng: random.Random, ident: int) -> dict[str, Any]:
    family = rng.choice(["DOE", "SMITH", "NGUYEN", "GARCIA", "MÜLLER", "O'BRIEN"])
    return {
        "cust_id": ident,
        "cust_nm": f"{family}, {rng.choice(['Jane', 'John', 'Ana', 'Li'])}",
        "email_addr": f"user{ident}@example.com",
        "phone_no": f"555-{rng.randrange(10_000):04d}",
        "addr_line1": f"{rng.randrange(1, 999)} Main St",
        "addr_city": rng.choice(["Springfield", "Shelbyville", "Ogdenville"]),
        "addr_zip": f"{rng.randrange(100_000):05d}",
        "status_cd": rng.choice("AI"),
        "created_ts": "20240102030405",
        "tenant_id": "acme",
        "active": rng.random() < 0.5,
        "balance": round(rng.uniform(0, 500), 2),
    }


def make_pair(rng: random.Random, target_bytes: int = 5_000) -> tuple[dict, dict]:
    """A legacy-shaped list page of about `target_bytes` and a copy with 1-4 differences."""
    doc: dict[str, Any] = {"page": 1, "page_size": 50, "total": 1000, "results": []}
    ident = rng.randrange(1, 10_000)
    while len(json.dumps(doc)) < target_bytes:
        doc["results"].append(_customer(rng, ident))
        ident += 1
    doc["generated_at"] = "2026-01-01T00:00:00Z"
    other = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        row = rng.choice(other["results"])
        change = rng.randrange(4)
        if change == 0:
            row["addr_zip"] = "99999"
        elif change == 1:
            row["active"] = int(row["active"])  # bool -> number: a type difference
        elif change == 2:
            row.pop("phone_no", None)
        else:
            row["balance"] = round(row["balance"] + 0.01, 2)
    other["generated_at"] = "2026-01-01T00:00:01Z"
    return doc, other


def _rate(fn, pairs: list, seconds: float) -> tuple[float, int]:
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for a, b in pairs:
            fn(a, b)
            done += 1
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start), done


def run(pairs: int = 200, seconds: float = 2.0, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    data = [make_pair(rng) for _ in range(pairs)]
    size = sum(len(json.dumps(a)) for a, _ in data) / len(data)
    differ = Differ(Rules())
    # sanity: both engines see differences in every pair
    for a, b in data[:20]:
        assert differ.diff_json(a, b) and DeepDiff(a, b)
    ours, n_ours = _rate(differ.diff_json, data, seconds)
    deep, n_deep = _rate(lambda a, b: DeepDiff(a, b), data[: max(1, pairs // 10)], seconds)
    responses = [
        (
            CapturedResponse(200, JSON, json.dumps(a).encode()),
            CapturedResponse(200, JSON, json.dumps(b).encode()),
        )
        for a, b in data
    ]
    full, _ = _rate(differ.compare, responses, seconds)
    result = {
        "doc_bytes": round(size),
        "strangler_pairs_per_s": round(ours, 1),
        "strangler_with_parse_pairs_per_s": round(full, 1),
        "deepdiff_pairs_per_s": round(deep, 1),
        "speedup": round(ours / deep, 1),
        "speedup_with_parse": round(full / deep, 1),
        "strangler_pairs": n_ours,
        "deepdiff_pairs": n_deep,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    r = run(args.pairs, args.seconds)
    print(f"JSON pairs of ~{r['doc_bytes']} bytes with 1-4 differences each")
    print(f"  strangler diff_json        {r['strangler_pairs_per_s']:>10,.0f} pairs/s")
    print(f"  strangler compare (+parse) {r['strangler_with_parse_pairs_per_s']:>10,.0f} pairs/s")
    print(f"  deepdiff                   {r['deepdiff_pairs_per_s']:>10,.0f} pairs/s")
    print(f"  speedup {r['speedup']}x ({r['speedup_with_parse']}x including JSON parsing)")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
