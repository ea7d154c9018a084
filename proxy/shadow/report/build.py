"""Aggregate stored comparisons into the report every format renders (pure).

Per route and endpoint (route + method + path template): samples, matches and match rate,
the fields that differ with counts and up to five examples each, the fields that are noise
(two primaries disagree there as often as primary and candidate do), latency percentiles of
both sides, and a few example body pairs for side-by-side display.

A sample *matches* when none of its differing fields is a candidate failure by Diffy's rule
(see `proxy.shadow.noise`): noisy and below-threshold fields do not count against it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..model import DiffRecord
from ..noise import ABSOLUTE_THRESHOLD, FAILURE, NOISE, RELATIVE_THRESHOLD, NoiseAccount

MAX_EXAMPLES = 5
MAX_PAIRS = 5
SCHEMA_VERSION = 1


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    ms = [s * 1000.0 for s in seconds]
    return {
        name: (round(v, 3) if (v := percentile(ms, q)) is not None else None)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }


@dataclass(slots=True)
class _Field:
    count: int = 0
    kinds: Counter = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Endpoint:
    route: str
    method: str
    endpoint: str
    account: NoiseAccount = field(default_factory=NoiseAccount)
    fields: dict[str, _Field] = field(default_factory=dict)
    sample_fields: list[frozenset[str]] = field(default_factory=list)
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    primary_latency: list[float] = field(default_factory=list)
    candidate_latency: list[float] = field(default_factory=list)
    pair_candidates: list[DiffRecord] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    noise_from: list[str] | None = None  # methods whose noise samples this one borrowed

    def borrow_noise(self, siblings: list[_Endpoint]) -> None:
        """Unsafe methods are never sent to the primary twice (it would write twice), so a
        PATCH endpoint has no noise samples of its own and every noisy field (a timestamp,
        a trace id) would count as a failure. Its body is the same record as GET's: it
        borrows the noise of the same route and endpoint's other methods."""
        own = self.account
        lenders = [s for s in siblings if s is not self and s.account.noise_samples]
        if own.noise_samples or not lenders:
            return
        for lender in lenders:
            own.noise_samples += lender.account.noise_samples
            own.noise.update(lender.account.noise)
        self.noise_from = sorted(s.method for s in lenders)

    def add(self, rec: DiffRecord) -> None:
        fields = frozenset(d.field for d in rec.differences)
        self.account.add(fields, rec.noise)
        self.sample_fields.append(fields)
        self.first_ts = rec.ts if self.first_ts is None else min(self.first_ts, rec.ts)
        self.last_ts = rec.ts if self.last_ts is None else max(self.last_ts, rec.ts)
        cand = "error" if rec.candidate_status is None else str(rec.candidate_status)
        self.statuses[f"{rec.primary_status}/{cand}"] += 1
        if rec.candidate_status is None:
            self.errors += 1
        self.primary_latency.append(rec.primary_latency)
        if rec.candidate_latency is not None:
            self.candidate_latency.append(rec.candidate_latency)
        # A field, and each kind of difference at it, counts once per sample (`count`,
        # `kinds`), as matches do: a list whose 40 prices differ is one sample with a
        # differing price, not 40. Examples come from different samples too.
        counted: set[str] = set()
        kinds_counted: set[tuple[str, str]] = set()
        for d in rec.differences:
            f = self.fields.get(d.field)
            if f is None:
                f = self.fields[d.field] = _Field()
            first = d.field not in counted
            if first:
                f.count += 1
                counted.add(d.field)
            if (d.field, d.kind) not in kinds_counted:
                f.kinds[d.kind] += 1
                kinds_counted.add((d.field, d.kind))
            if first and len(f.examples) < MAX_EXAMPLES:
                f.examples.append(
                    {
                        "path": d.path,
                        "kind": d.kind,
                        "primary": d.primary,
                        "candidate": d.candidate,
                        "request_id": rec.request_id,
                    }
                )
        if rec.differences and len(self.pair_candidates) < 4 * MAX_PAIRS:
            self.pair_candidates.append(rec)

    def to_json(self, relative: float, absolute: float) -> dict[str, Any]:
        acc = self.account
        verdicts = acc.verdicts(relative, absolute)
        failures = {name for name, v in verdicts.items() if v == FAILURE}
        matches = sum(1 for fields in self.sample_fields if not (fields & failures))
        fields_out = []
        for name, info in self.fields.items():
            v = verdicts.get(name)
            if v == NOISE:
                continue
            example = info.examples[0]
            fields_out.append(
                {
                    "path": name,
                    "count": info.count,
                    "rate": round(info.count / acc.samples, 4),
                    "noise_count": acc.noise[name],
                    "verdict": v,
                    "kinds": dict(info.kinds),
                    "example": {
                        "primary": example["primary"],
                        "candidate": example["candidate"],
                        "kind": example["kind"],
                        "path": example["path"],
                        "request_id": example["request_id"],
                    },
                    "examples": info.examples,
                }
            )
        fields_out.sort(key=lambda f: (f["verdict"] != FAILURE, -f["count"], f["path"]))
        noise_detail = sorted(
            (
                {"path": name, "raw": acc.raw[name], "noise": acc.noise[name]}
                for name, v in verdicts.items()
                if v == NOISE
            ),
            key=lambda n: (-n["noise"], n["path"]),
        )
        # Example pairs: prefer samples that show a failure, then any difference.
        ranked = sorted(
            self.pair_candidates,
            key=lambda r: not ({d.field for d in r.differences} & failures),
        )
        pairs = [
            {
                "request_id": r.request_id,
                "body_kind": r.body_kind,
                "primary_status": r.primary_status,
                "candidate_status": r.candidate_status,
                "primary_body": r.primary_body,
                "candidate_body": r.candidate_body,
                "differences": [
                    {**d.to_json(), "verdict": verdicts.get(d.field)} for d in r.differences
                ],
            }
            for r in ranked[:MAX_PAIRS]
        ]
        return {
            "route": self.route,
            "method": self.method,
            "endpoint": self.endpoint,
            "samples": acc.samples,
            "matches": matches,
            "match_rate": round(matches / acc.samples, 4) if acc.samples else None,
            "mismatches": acc.samples - matches,
            "errors": self.errors,
            "noise_samples": acc.noise_samples,
            "noise_from": self.noise_from,
            "statuses": dict(self.statuses),
            "fields": fields_out,
            "noise": [n["path"] for n in noise_detail],
            "noise_detail": noise_detail,
            "latency_ms": {
                "primary": latency_summary(self.primary_latency),
                "candidate": latency_summary(self.candidate_latency),
            },
            "first_seen": _iso(self.first_ts),
            "last_seen": _iso(self.last_ts),
            "pairs": pairs,
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_report(
    records: Iterable[DiffRecord],
    *,
    routes: Iterable[str] | None = None,
    since: float | None = None,
    relative: float = RELATIVE_THRESHOLD,
    absolute: float = ABSOLUTE_THRESHOLD,
    now: float | None = None,
) -> dict[str, Any]:
    """The report as one JSON-able dict (schema in docs/shadow.md)."""
    wanted = set(routes) if routes else None
    endpoints: dict[tuple[str, str, str], _Endpoint] = {}
    for rec in records:
        if wanted is not None and rec.route not in wanted:
            continue
        if since is not None and rec.ts < since:
            continue
        key = (rec.route, rec.method, rec.endpoint)
        ep = endpoints.get(key)
        if ep is None:
            ep = endpoints[key] = _Endpoint(*key)
        ep.add(rec)
    by_endpoint: dict[tuple[str, str], list[_Endpoint]] = {}
    for ep in endpoints.values():
        by_endpoint.setdefault((ep.route, ep.endpoint), []).append(ep)
    for ep in endpoints.values():
        ep.borrow_noise(by_endpoint[(ep.route, ep.endpoint)])
    rows = [endpoints[k].to_json(relative, absolute) for k in sorted(endpoints)]
    by_route: dict[str, dict[str, Any]] = {}
    for row in rows:
        r = by_route.setdefault(
            row["route"], {"route": row["route"], "samples": 0, "matches": 0, "endpoints": 0}
        )
        r["samples"] += row["samples"]
        r["matches"] += row["matches"]
        r["endpoints"] += 1
    for r in by_route.values():
        r["match_rate"] = round(r["matches"] / r["samples"], 4) if r["samples"] else None
    samples = sum(r["samples"] for r in by_route.values())
    matches = sum(r["matches"] for r in by_route.values())
    generated = datetime.now(UTC).timestamp() if now is None else now
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": _iso(generated),
        "filters": {"routes": sorted(wanted) if wanted else None, "since": _iso(since)},
        "thresholds": {"relative": relative, "absolute": absolute},
        "totals": {
            "samples": samples,
            "matches": matches,
            "match_rate": round(matches / samples, 4) if samples else None,
        },
        "routes": [by_route[name] for name in sorted(by_route)],
        "endpoints": rows,
    }
