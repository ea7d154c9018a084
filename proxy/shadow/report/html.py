"""The report as one self-contained HTML page (pure; no scripts, fonts or external assets).

Example pairs are shown side by side, pretty-printed, with the lines of differing fields
highlighted: changed values on both sides, missing fields on the primary side, extra fields
on the candidate side. Everything from the store is escaped: bodies are untrusted input.
"""

from __future__ import annotations

import difflib
import json
import re
from html import escape
from typing import Any

from ..paths import Keyed, format_path

# Room for example bodies in the page, in characters of their rendered HTML: past this a report
# with thousands of endpoints (a prefix route sees one per distinct path word) took a minute
# to open in Chromium. Each endpoint's first pair is given room before anyone's second,
# endpoints with the most mismatches first; a pair left out keeps its table of differences.
MAX_PAGE_BODIES = 8_000_000

_KEYED_NAME = re.compile(r"\[([A-Za-z_][A-Za-z0-9_\-]*)=")

_CSS = """
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --mute:#57606a; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { margin: 0; color: #d0d7de; }
main { padding: 16px 24px 48px; max-width: 1600px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px;
          margin: 0 0 16px; }
/* Lay out only the endpoints on screen: a page of 2,000 took a minute to open without. */
section.endpoint { content-visibility: auto; contain-intrinsic-size: auto 800px; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; color: var(--mute); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .mono { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.rate { display: inline-block; min-width: 56px; font-weight: 600; }
.rate.good { color: var(--ok); } .rate.bad { color: var(--bad); } .rate.mid { color: var(--warn); }
.bar { display: inline-block; width: 120px; height: 8px; background: #ffebe9; border-radius: 4px;
       vertical-align: middle; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--ok); }
.verdict { font-size: 11px; padding: 1px 6px; border-radius: 10px; border: 1px solid; }
.verdict.failure { color: var(--bad); } .verdict.below_threshold { color: var(--mute); }
.noise { color: var(--mute); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; margin: 6px 0 12px; }
.side { border: 1px solid var(--line); border-radius: 6px; overflow: auto; max-height: 520px; }
.side h4 { margin: 0; padding: 4px 8px; background: #f6f8fa; border-bottom: 1px solid var(--line);
           font-size: 12px; position: sticky; top: 0; }
.side pre { margin: 0; padding: 4px 0; }
.line { display: block; padding: 0 8px; white-space: pre; }
.line.chg { background: #fff8c5; } .line.del { background: #ffebe9; }
.line.add { background: #dafbe1; }
.line mark { background: transparent; color: inherit; font-weight: 700; }
.absent { color: var(--mute); }
.empty, .omitted { color: var(--mute); font-style: italic; padding: 4px 8px; }
details > summary { cursor: pointer; color: #0969da; }
.diffs td { font-size: 12px; }
"""


def _rate_class(rate: float | None) -> str:
    if rate is None:
        return ""
    return "good" if rate >= 0.99 else "mid" if rate >= 0.9 else "bad"


def _rate(rate: float | None) -> str:
    if rate is None:
        return '<span class="rate">-</span>'
    pct = f"{rate * 100:.1f}%"
    return (
        f'<span class="rate {_rate_class(rate)}">{pct}</span>'
        f'<span class="bar" title="{pct}"><span style="width:{rate * 100:.1f}%"></span></span>'
    )


def _val(value: Any, absent: bool = False) -> str:
    if absent:
        return '<em class="absent">absent</em>'
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > 200:
        text = text[:199] + "…"
    return f"<code>{escape(text)}</code>"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ---- pretty-printing with paths ---------------------------------------------------------------


def json_lines(doc: Any, keyed_names: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Pretty-printed JSON as (field path, line) pairs, so lines can be matched to differences.

    List elements that are objects with one of `keyed_names` are addressed as `[key=value]`,
    the way the comparator names elements of arrays compared as keyed sets.
    """
    out: list[tuple[str, str]] = []

    def emit(value: Any, segs: list, indent: int, prefix: str, suffix: str) -> None:
        pad = "  " * indent
        path = format_path(segs)
        if isinstance(value, dict) and value:
            out.append((path, f"{pad}{prefix}{{"))
            items = list(value.items())
            for i, (k, v) in enumerate(items):
                emit(
                    v,
                    [*segs, k],
                    indent + 1,
                    f"{json.dumps(k, ensure_ascii=False)}: ",
                    "," if i < len(items) - 1 else "",
                )
            out.append((path, f"{pad}}}{suffix}"))
        elif isinstance(value, list) and value:
            out.append((path, f"{pad}{prefix}["))
            for i, v in enumerate(value):
                seg: Any = i
                if keyed_names and isinstance(v, dict):
                    for name in keyed_names:
                        kv = v.get(name)
                        if kv is not None and not isinstance(kv, dict | list):
                            seg = Keyed(name, kv)
                            break
                emit(v, [*segs, seg], indent + 1, "", "," if i < len(value) - 1 else "")
            out.append((path, f"{pad}]{suffix}"))
        else:
            text = json.dumps(value, ensure_ascii=False)
            out.append((path, f"{pad}{prefix}{text}{suffix}"))

    emit(doc, [], 0, "", "")
    return out


class _Targets:
    """Highlight classes by differing path, looked up for each line of a body.

    A line is highlighted when its path is a differing path or lies inside one (a prefix
    ending before `.` or `[`); among several enclosing ones, the first given wins. Looked up
    through the line's own prefixes (as many as it is deep), never by scanning every
    difference: a body whose 3,000 elements all differ has 3,000 targets and 10,000 lines."""

    def __init__(self, targets: dict[str, str]) -> None:
        self.exact = targets
        self.ranked = {t: (i, cls) for i, (t, cls) in enumerate(targets.items()) if t != "$"}

    def __bool__(self) -> bool:
        return bool(self.exact)

    def cls(self, path: str) -> str | None:
        hit = self.exact.get(path)
        if hit:
            return hit
        best: tuple[int, str] | None = None
        for k, ch in enumerate(path):
            found = self.ranked.get(path[:k]) if ch in ".[" else None
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        return best[1] if best else None


def text_marks(primary: str, candidate: str) -> tuple[dict[str, str], dict[str, str]]:
    """Highlights for two text bodies, each side in its own line numbers.

    The differences' `line:N` paths count the primary's lines; on the candidate side a line
    removed or added above shifts them, so the candidate's lines are aligned again here
    (as the comparator aligned them): changed lines `chg` on both sides, removed ones `del`
    on the primary side, added ones `add` on the candidate side."""
    a, b = primary.splitlines(), candidate.splitlines()
    left: dict[str, str] = {}
    right: dict[str, str] = {}
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("replace", "delete"):
            for i in range(i1, i2):
                left[f"line:{i + 1}"] = "chg" if op == "replace" else "del"
        if op in ("replace", "insert"):
            for j in range(j1, j2):
                right[f"line:{j + 1}"] = "chg" if op == "replace" else "add"
    return left, right


def _side(
    body: str | None,
    kind: str,
    diffs: list[dict[str, Any]],
    side: str,
    text_targets: dict[str, str] | None = None,
) -> str:
    if body is None:
        return '<div class="empty">body not kept (binary, too large or no answer)</div>'
    if body == "":
        return '<div class="empty">empty body</div>'
    targets: dict[str, str] = {}
    if text_targets is not None:
        targets, diffs = text_targets, []
    for d in diffs:
        k = d["kind"]
        if side == "primary" and k == "extra":
            continue
        if side == "candidate" and k == "missing":
            continue
        targets[d["path"]] = {"missing": "del", "extra": "add"}.get(k, "chg")
    if kind == "json":
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
            kind = "text"
        else:
            names = frozenset(m.group(1) for d in diffs for m in _KEYED_NAME.finditer(d["path"]))
            lines = json_lines(doc, names)
    if kind != "json":
        lines = [(f"line:{i}", text) for i, text in enumerate(body.splitlines(), 1)]
    rendered = []
    lookup = _Targets(targets)
    for path, text in lines:
        cls = lookup.cls(path) if lookup else None
        if cls:
            rendered.append(
                f'<span class="line {cls}" data-path="{escape(path)}"><mark>{escape(text)}'
                "</mark></span>"
            )
        else:
            rendered.append(f'<span class="line">{escape(text)}</span>')
    return "<pre>" + "".join(rendered) + "</pre>"


# ---- page -------------------------------------------------------------------------------------


def _pair_html(pair: dict[str, Any]) -> str:
    """An example pair's two bodies side by side, differing lines highlighted."""
    diffs = pair["differences"]
    marks: tuple[dict[str, str], dict[str, str]] | tuple[None, None] = (None, None)
    if (
        pair["body_kind"] == "text"
        and pair["primary_body"]
        and pair["candidate_body"]
        and any(d["path"].startswith("line:") for d in diffs)
    ):
        marks = text_marks(pair["primary_body"], pair["candidate_body"])
    cand_status = pair["candidate_status"] if pair["candidate_status"] is not None else "error"
    return (
        '<div class="pair">'
        f'<div class="side primary"><h4>primary · {escape(str(pair["primary_status"]))}</h4>'
        f"{_side(pair['primary_body'], pair['body_kind'], diffs, 'primary', marks[0])}</div>"
        f'<div class="side candidate"><h4>candidate · {escape(str(cand_status))}</h4>'
        f"{_side(pair['candidate_body'], pair['body_kind'], diffs, 'candidate', marks[1])}"
        "</div></div>"
    )


def rendered_pairs(endpoints: list[dict[str, Any]], budget: int) -> dict[tuple[int, int], str]:
    """The side-by-side HTML of the example pairs the page has room for, by (endpoint index,
    pair index): `budget` characters in all, given round by round (every endpoint's first
    pair, then every second one...), endpoints with the most mismatches first in a round. A
    pair too big for what is left is passed over for smaller ones; a pair not reached is
    never rendered (so a report of 100,000 endpoints costs no more than the budget)."""
    order = sorted(range(len(endpoints)), key=lambda i: (-endpoints[i]["mismatches"], i))
    out: dict[tuple[int, int], str] = {}
    misses = 0
    rounds = max((len(ep["pairs"]) for ep in endpoints), default=0)
    for n in range(rounds):
        for i in order:
            pairs = endpoints[i]["pairs"]
            if n >= len(pairs):
                continue
            html = _pair_html(pairs[n])
            if len(html) > budget:
                misses += 1
                if misses >= 20:  # the page is as good as full
                    return out
                continue
            budget -= len(html)
            out[(i, n)] = html
    return out


def _endpoint(ep: dict[str, Any], index: int, pairs: dict[tuple[int, int], str]) -> str:
    title = f"{ep['method']} {ep['endpoint']}"
    parts = [
        f'<section class="endpoint" id="ep-{index}" data-route="{escape(ep["route"])}"'
        f' data-endpoint="{escape(title)}">',
        f'<h2>{escape(ep["route"])} · <span class="mono">{escape(title)}</span></h2>',
        '<table class="stats"><tr><th class=num>Samples</th><th class=num>Matches</th>'
        "<th>Match rate</th><th class=num>Errors</th><th class=num>Noise samples</th>"
        "<th>Status primary/candidate</th></tr>",
        f"<tr><td class=num>{ep['samples']}</td><td class=num>{ep['matches']}</td>"
        f"<td>{_rate(ep['match_rate'])}</td><td class=num>{ep['errors']}</td>"
        f"<td class=num>{ep['noise_samples']}</td><td>"
        + ", ".join(f"{escape(k)}: {v}" for k, v in sorted(ep["statuses"].items()))
        + "</td></tr></table>",
        '<h3>Latency (ms)</h3><table class="latency"><tr><th></th><th class=num>p50</th>'
        "<th class=num>p95</th><th class=num>p99</th></tr>",
    ]
    for side in ("primary", "candidate"):
        q = ep["latency_ms"][side]
        parts.append(
            f"<tr><th>{side}</th><td class=num>{_ms(q['p50'])}</td>"
            f"<td class=num>{_ms(q['p95'])}</td><td class=num>{_ms(q['p99'])}</td></tr>"
        )
    parts.append("</table>")
    if ep["fields"]:
        parts.append(
            '<h3>Differing fields</h3><table class="fields"><tr><th>Field</th>'
            "<th class=num>Count</th><th>Kind</th><th>Verdict</th><th>Primary</th>"
            "<th>Candidate</th></tr>"
        )
        for f in ep["fields"]:
            ex = f["example"]
            parts.append(
                f'<tr class="field" data-path="{escape(f["path"])}">'
                f"<td class=mono>{escape(f['path'])}</td><td class=num>{f['count']}</td>"
                f"<td>{escape(', '.join(sorted(f['kinds'])))}</td>"
                f'<td><span class="verdict {escape(f["verdict"] or "")}">'
                f"{escape((f['verdict'] or '').replace('_', ' '))}</span></td>"
                f"<td>{_val(ex['primary'], ex.get('kind') == 'extra')}</td>"
                f"<td>{_val(ex['candidate'], ex.get('kind') == 'missing')}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No differing fields.</p>")
    if ep["noise"]:
        items = "".join(
            f"<li><code>{escape(n['path'])}</code> (raw {n['raw']}, noise {n['noise']})</li>"
            for n in ep["noise_detail"]
        )
        parts.append(f'<h3>Noise (not counted)</h3><ul class="noise">{items}</ul>')
    for i, pair in enumerate(ep["pairs"]):
        diffs = pair["differences"]
        rows = "".join(
            f"<tr><td class=mono>{escape(d['path'])}</td><td>{escape(d['kind'])}</td>"
            f"<td>{_val(d['primary'], d['kind'] == 'extra')}</td>"
            f"<td>{_val(d['candidate'], d['kind'] == 'missing')}</td></tr>"
            for d in diffs[:50]
        )
        bodies = pairs.get((index, i))
        if bodies is None:
            bodies = (
                '<p class="omitted">Bodies not shown: the page has room for about '
                f"{MAX_PAGE_BODIES // 1_000_000} MB of example bodies. "
                f"<code>--route {escape(ep['route'])}</code> or <code>--since</code> "
                "narrows the report; <code>--format json</code> has every pair.</p>"
            )
        open_attr = " open" if i == 0 else ""
        parts.append(
            f'<details class="example"{open_attr}><summary>Example {i + 1}: request '
            f"<code>{escape(pair['request_id'])}</code> ({len(diffs)} differences)</summary>"
            f'<table class="diffs"><tr><th>Path</th><th>Kind</th><th>Primary</th>'
            f"<th>Candidate</th></tr>{rows}</table>{bodies}</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_html(report: dict[str, Any], body_budget: int = MAX_PAGE_BODIES) -> str:
    totals = report["totals"]
    filters = report["filters"]
    meta = f"generated {escape(report['generated_at'] or '')} · {totals['samples']} samples"
    if filters.get("routes"):
        meta += " · routes " + escape(", ".join(filters["routes"]))
    if filters.get("since"):
        meta += " · since " + escape(filters["since"])
    rate = totals["match_rate"]
    overall = "-" if rate is None else f"{rate * 100:.1f}%"
    route_rows = "".join(
        f'<tr class="route" data-route="{escape(r["route"])}"><td>{escape(r["route"])}</td>'
        f"<td class=num>{r['endpoints']}</td><td class=num>{r['samples']}</td>"
        f"<td class=num>{r['matches']}</td><td>{_rate(r['match_rate'])}</td></tr>"
        for r in report["routes"]
    )
    index = "".join(
        f'<li><a href="#ep-{i}">{escape(ep["route"])} · {escape(ep["method"])} '
        f"{escape(ep['endpoint'])}</a> {_rate(ep['match_rate'])}</li>"
        for i, ep in enumerate(report["endpoints"])
    )
    body = (
        '<section id="routes"><h2>Routes</h2><table class="routes"><tr><th>Route</th>'
        "<th class=num>Endpoints</th><th class=num>Samples</th><th class=num>Matches</th>"
        f"<th>Match rate</th></tr>{route_rows}</table>"
        f'<h3>Endpoints</h3><ul class="index">{index}</ul></section>'
        if report["endpoints"]
        else '<section id="routes"><p>No comparisons recorded.</p></section>'
    )
    pairs = rendered_pairs(report["endpoints"], body_budget)
    body += "".join(_endpoint(ep, i, pairs) for i, ep in enumerate(report["endpoints"]))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        # No scripts, no fetches, whatever a stored body holds (they are escaped besides).
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Strangler shadow report</title>"
        f"<style>{_CSS}</style></head><body>"
        f'<header><h1>Strangler shadow report</h1><p class="meta">{meta} · match rate '
        f"{overall}"
        f"</p></header><main>{body}</main></body></html>\n"
    )
