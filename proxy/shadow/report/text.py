"""The report as plain text for a terminal (pure)."""

from __future__ import annotations

import json
from typing import Any

TOP_FIELDS = 10


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# Control characters from stored values (upstream answers) are shown escaped: a newline would
# break the table, and an escape sequence would drive the reader's terminal (clear the
# screen, recolour or overwrite lines) instead of being read.
_CONTROLS = {
    c: json.dumps(chr(c))[1:-1] if c < 0x20 else f"\\x{c:02x}"
    for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}


def clean(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\u001b`, `\\x9b`)."""
    return text.translate(_CONTROLS)


def _short(value: Any, limit: int = 40) -> str:
    text = clean(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _side(example: dict[str, Any], side: str) -> str:
    absent = {"primary": "extra", "candidate": "missing"}[side]
    return "(absent)" if example.get("kind") == absent else _short(example[side])


def render_text(report: dict[str, Any], top: int = TOP_FIELDS) -> str:
    lines: list[str] = []
    totals = report["totals"]
    head = f"Shadow report, generated {report['generated_at']}"
    filters = report["filters"]
    if filters.get("routes"):
        head += f", routes {', '.join(filters['routes'])}"
    if filters.get("since"):
        head += f", since {filters['since']}"
    lines.append(head)
    lines.append(
        f"{totals['samples']} samples, {totals['matches']} matching ({_pct(totals['match_rate'])})"
    )
    if not report["endpoints"]:
        lines.append("")
        lines.append("No comparisons recorded (is a route in mode: shadow receiving traffic?).")
        return "\n".join(lines) + "\n"
    for ep in report["endpoints"]:
        lines.append("")
        lines.append(f"{clean(ep['route'])}  {clean(ep['method'])} {clean(ep['endpoint'])}")
        lines.append(
            f"  samples {ep['samples']}  matches {ep['matches']} ({_pct(ep['match_rate'])})"
            f"  errors {ep['errors']}  noise samples {ep['noise_samples']}"
        )
        lat = ep["latency_ms"]
        for side in ("primary", "candidate"):
            q = lat[side]
            lines.append(
                f"  {side:<9} latency ms  p50 {_ms(q['p50'])}  p95 {_ms(q['p95'])}"
                f"  p99 {_ms(q['p99'])}"
            )
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(ep["statuses"].items()))
        lines.append(f"  status primary/candidate  {statuses}")
        if ep["fields"]:
            lines.append("  differing fields:")
            width = min(max(len(clean(f["path"])) for f in ep["fields"][:top]), 48)
            for f in ep["fields"][:top]:
                ex = f["example"]
                flag = "" if f["verdict"] == "failure" else f"  ({f['verdict']})"
                kinds = ",".join(sorted(f["kinds"]))
                lines.append(
                    f"    {clean(f['path']):<{width}}  {f['count']:>6}  {kinds:<8}"
                    f"  {_side(ex, 'primary')} -> {_side(ex, 'candidate')}{flag}"
                )
            if len(ep["fields"]) > top:
                lines.append(f"    … {len(ep['fields']) - top} more (use --format json)")
        if ep["noise"]:
            lines.append(f"  noise (not counted): {clean(', '.join(ep['noise'][:top]))}")
    return "\n".join(lines) + "\n"
