"""Compare a primary and a candidate response, as pure functions over plain data.

Status, an allow-list of headers, and the body: JSON structurally (field paths such as
`$.items[3].total`), text line by line, anything else by hash. Per-route rules (ignored paths,
numeric tolerance, keyed unordered arrays, case-insensitive strings, list order) come from
`ShadowPolicy`. Difference kinds follow Twitter's Diffy: value, type, missing, extra, order,
length; plus `incomparable` when the two bodies cannot be compared at all.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from proxy.config.model import ShadowPolicy

from .model import CapturedResponse, Comparison, Difference
from .paths import Keyed, PatternSet, Segment, format_path, generalize

try:  # brotli is optional: without it `br` bodies are recorded as incomparable
    import brotli  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

# Never compared, even when allow-listed: they differ by construction between two servers.
IGNORED_HEADERS = frozenset(
    {
        "date",
        "server",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)
DEFAULT_HEADERS = ("content-type",)
MAX_DECOMPRESSED = 32 * 1024 * 1024
MAX_TEXT_LINES = 20_000
MAX_EXAMPLE_CHARS = 2_000
# Order detection pairs elements one by one only under a numeric tolerance, for at most
# this many differing positions (quadratic).
MAX_TOLERANT_PAIRING = 64

_IGNORE, _CI = "ignore", "ci"
_SCALARS = frozenset({str, int, float, bool, type(None)})


def clip(value: Any, limit: int = MAX_EXAMPLE_CHARS) -> Any:
    """Keep example values small: large subtrees become a truncated JSON string."""
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
        if len(text) > limit:
            return text[:limit] + "…"
        return value
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


@dataclass(frozen=True, slots=True)
class Rules:
    """The comparison rules of one route (see `ShadowPolicy`)."""

    ignore: tuple[str, ...] = ()
    tolerance: float = 0.0
    unordered: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    case_insensitive: tuple[str, ...] = ()
    ignore_list_order: bool = False
    headers: tuple[str, ...] | None = None  # None: DEFAULT_HEADERS

    @classmethod
    def from_policy(cls, policy: ShadowPolicy) -> Rules:
        return cls(
            ignore=tuple(policy.ignore),
            tolerance=float(policy.tolerance),
            unordered=MappingProxyType(dict(policy.unordered)),
            case_insensitive=tuple(policy.case_insensitive),
            ignore_list_order=bool(policy.ignore_list_order),
            headers=None if policy.headers is None else tuple(h.lower() for h in policy.headers),
        )


class Differ:
    """Rules compiled once per route; `compare` and `diff_json` are then pure and reentrant."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules = rules or Rules()
        tagged: list[tuple[str, object]] = [(p, _IGNORE) for p in rules.ignore]
        tagged += [(p, _CI) for p in rules.case_insensitive]
        tagged += [(p, ("unordered", key)) for p, key in rules.unordered.items()]
        self._patterns = PatternSet(tagged)
        self._tolerance = float(rules.tolerance)
        self._ignore_order = rules.ignore_list_order
        allowed = DEFAULT_HEADERS if rules.headers is None else rules.headers
        self._headers = tuple(h.lower() for h in allowed if h.lower() not in IGNORED_HEADERS)

    # ---- JSON -----------------------------------------------------------------------------

    def diff_json(self, primary: Any, candidate: Any) -> list[Difference]:
        """Structural differences between two parsed JSON documents, in document order."""
        out: list[Difference] = []
        state = self._patterns.start
        tags = self._patterns.accepted(state)
        if _IGNORE in tags:
            return out
        self._walk(primary, candidate, [], state, _CI in tags, out)
        return out

    def _add(self, out: list, path: list, kind: str, a: Any, b: Any) -> None:
        out.append(Difference(format_path(path), generalize(path), kind, clip(a), clip(b)))

    def _walk(self, a: Any, b: Any, path: list, state: tuple, ci: bool, out: list) -> None:
        ta = type(a)
        tb = type(b)
        if ta is dict:
            if tb is not dict:
                self._add(out, path, "type", a, b)
                return
            self._walk_dict(a, b, path, state, ci, out)
        elif ta is list:
            if tb is not list:
                self._add(out, path, "type", a, b)
                return
            self._walk_list(a, b, path, state, ci, out)
        elif ta is tb:
            if ta is str:
                if a != b and not (ci and a.casefold() == b.casefold()):
                    self._add(out, path, "value", a, b)
            elif ta is float or ta is int:
                if (
                    a != b
                    and not (self._tolerance and abs(a - b) <= self._tolerance)
                    and (a == a or b == b)  # NaN (Python's json reads it) equals NaN here
                ):
                    self._add(out, path, "value", a, b)
            elif a != b:
                self._add(out, path, "value", a, b)
        elif (ta is int and tb is float) or (ta is float and tb is int):
            if a != b and not (self._tolerance and abs(a - b) <= self._tolerance):
                self._add(out, path, "value", a, b)
        else:
            self._add(out, path, "type", a, b)

    def _child(self, state: tuple, seg: Segment, ci: bool) -> tuple[tuple, bool, bool]:
        """(child state, ignored?, case-insensitive?) for one step down."""
        if not state:
            return state, False, ci
        child = self._patterns.step(state, seg)
        tags = self._patterns.accepted(child)
        return child, _IGNORE in tags, ci or _CI in tags

    def _walk_dict(self, a: dict, b: dict, path: list, state: tuple, ci: bool, out: list) -> None:
        for key, va in a.items():
            if state:
                child, ignored, cci = self._child(state, key, ci)
                if ignored:
                    continue
            else:
                child, cci = state, ci
            if key in b:
                vb = b[key]
                tv = type(va)
                # Fast path for equal leaves of the same type (True == 1, so types first).
                if tv is type(vb) and tv in _SCALARS and va == vb:
                    continue
                path.append(key)
                self._walk(va, vb, path, child, cci, out)
                path.pop()
            else:
                path.append(key)
                self._add(out, path, "missing", va, None)
                path.pop()
        for key, vb in b.items():
            if key not in a:
                if state and self._child(state, key, ci)[1]:
                    continue
                path.append(key)
                self._add(out, path, "extra", None, vb)
                path.pop()

    def _walk_list(self, a: list, b: list, path: list, state: tuple, ci: bool, out: list) -> None:
        if state:
            for tag in self._patterns.accepted(state):
                if type(tag) is tuple and tag[0] == "unordered":
                    if self._walk_keyed(a, b, tag[1], path, state, ci, out):
                        return
                    break
        if len(a) != len(b):
            self._add(out, path, "length", len(a), len(b))
            return
        if self._ignore_order:
            self._walk_unordered(a, b, path, state, ci, out)
            return
        mark = len(out)
        differing: list[int] = []
        for i in range(len(a)):
            va, vb = a[i], b[i]
            tv = type(va)
            if tv is type(vb) and tv in _SCALARS and va == vb and not state:
                continue
            if state:
                child, ignored, cci = self._child(state, i, ci)
                if ignored:
                    continue
            else:
                child, cci = state, ci
            before = len(out)
            path.append(i)
            self._walk(va, vb, path, child, cci, out)
            path.pop()
            if len(out) > before:
                differing.append(i)
        # Same elements in another order: the differing positions hold the same multiset
        # (at least two positions must differ for that; equal positions cancel out), equal
        # as the route's rules see them (an ignored `etag` or a case-insensitive name in each
        # element must not turn a reordering into value differences).
        if len(differing) > 1 and self._same_multiset(a, b, differing, state, ci):
            del out[mark:]
            self._add(out, path, "order", a, b)

    def _walk_unordered(
        self, a: list, b: list, path: list, state: tuple, ci: bool, out: list
    ) -> None:
        """Pair equal elements regardless of position; diff what is left in order.

        Equal elements are matched first-to-first per value, which keeps the pairing the same
        whichever side is called primary."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for i, va in enumerate(a):
            groups.setdefault(self._element_key(va, i, state, ci), ([], []))[0].append(i)
        for j, vb in enumerate(b):
            groups.setdefault(self._element_key(vb, j, state, ci), ([], []))[1].append(j)
        left_a: list[int] = []
        left_b: list[int] = []
        for ia, jb in groups.values():
            m = min(len(ia), len(jb))
            left_a.extend(ia[m:])
            left_b.extend(jb[m:])
        left_a.sort()
        left_b.sort()
        for i, j in zip(left_a, left_b, strict=True):
            child, ignored, cci = self._child(state, i, ci)
            if ignored:
                continue
            path.append(i)
            self._walk(a[i], b[j], path, child, cci, out)
            path.pop()

    # ---- equality as the rules see it (for order detection) -----------------------------

    def _element_key(self, value: Any, index: int, state: tuple, ci: bool) -> str:
        """A list element's canonical text under the rules, at position `index`."""
        if not state:
            return self._canon_text(value, state, ci)
        child, ignored, cci = self._child(state, index, ci)
        return "" if ignored else self._canon_text(value, child, cci)

    def _canon_text(self, value: Any, state: tuple, ci: bool) -> str:
        if not state and not ci and not _has_float(value):
            return _canonical(value)  # no rule applies below: the plain canonical form
        return json.dumps(self._canon(value, state, ci), sort_keys=True, separators=(",", ":"))

    def _canon(self, value: Any, state: tuple, ci: bool) -> Any:
        """`value` as the rules compare it: ignored fields dropped, case-insensitive strings
        folded, `1.0` as `1`, and arrays whose order does not count (`ignore_list_order`,
        `unordered`) sorted. Two values with equal canonical forms have no differences
        (numeric tolerance aside, which `_same` handles)."""
        t = type(value)
        if t is dict:
            out = {}
            for key, item in value.items():
                child, ignored, cci = self._child(state, key, ci)
                if not ignored:
                    out[key] = self._canon(item, child, cci)
            return out
        if t is list:
            keyed = None
            if state:
                for tag in self._patterns.accepted(state):
                    if type(tag) is tuple and tag[0] == "unordered":
                        keyed = tag[1]
                        break
            items = []
            for i, item in enumerate(value):
                seg: Segment = i
                if keyed is not None and type(item) is dict:
                    kv = item.get(keyed)
                    if kv is not None and not isinstance(kv, dict | list):
                        seg = Keyed(keyed, kv)
                child, ignored, cci = self._child(state, seg, ci)
                if not ignored:
                    items.append(self._canon(item, child, cci))
            if keyed is not None or self._ignore_order:
                items.sort(key=lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")))
            return items
        if t is str:
            return value.casefold() if ci else value
        if t is float:
            if value != value:
                return "NaN"
            if value.is_integer() and abs(value) < 2**53:
                return int(value)
        return value

    def _same(self, a: Any, b: Any, index: int, state: tuple, ci: bool) -> bool:
        """No difference between two elements under the rules (tolerance included)."""
        if state:
            state, ignored, ci = self._child(state, index, ci)
            if ignored:
                return True
        scratch: list[Difference] = []
        self._walk(a, b, [], state, ci, scratch)
        return not scratch

    def _same_multiset(
        self, a: list, b: list, positions: list[int], state: tuple, ci: bool
    ) -> bool:
        """Do `a` and `b` hold equal elements (as the rules see them) at these positions,
        in some order?"""
        left = sorted(self._element_key(a[i], i, state, ci) for i in positions)
        right = sorted(self._element_key(b[i], i, state, ci) for i in positions)
        if left == right:
            return True
        if not self._tolerance or len(positions) > MAX_TOLERANT_PAIRING:
            return False
        # Numbers within tolerance have no canonical form: pair elements one by one.
        unused = list(positions)
        for i in positions:
            for n, j in enumerate(unused):
                if self._same(a[i], b[j], i, state, ci):
                    del unused[n]
                    break
            else:
                return False
        return True

    def _walk_keyed(
        self, a: list, b: list, key: str, path: list, state: tuple, ci: bool, out: list
    ) -> bool:
        """Compare lists as sets keyed by `key`; False when elements lack unique keys."""
        ia = _index_by(a, key)
        ib = _index_by(b, key)
        if ia is None or ib is None:
            return False
        for kv, va in ia.items():
            seg = Keyed(key, kv)
            child, ignored, cci = self._child(state, seg, ci)
            if ignored:
                continue
            path.append(seg)
            if kv in ib:
                self._walk(va, ib[kv], path, child, cci, out)
            else:
                self._add(out, path, "missing", va, None)
            path.pop()
        for kv, vb in ib.items():
            if kv not in ia:
                seg = Keyed(key, kv)
                if self._child(state, seg, ci)[1]:
                    continue
                path.append(seg)
                self._add(out, path, "extra", None, vb)
                path.pop()
        return True

    # ---- whole responses ------------------------------------------------------------------

    def compare(self, primary: CapturedResponse, candidate: CapturedResponse) -> Comparison:
        """Status, allow-listed headers, then the body by its content type."""
        out: list[Difference] = []
        if primary.status != candidate.status:
            out.append(Difference("status", "status", "value", primary.status, candidate.status))
        for name in self._headers:
            hp, hc = _header_value(primary, name), _header_value(candidate, name)
            if hp != hc:
                kind = "missing" if hc is None else "extra" if hp is None else "value"
                out.append(Difference(f"header:{name}", f"header:{name}", kind, hp, hc))
        body_kind = self._compare_bodies(primary, candidate, out)
        return Comparison(tuple(out), body_kind)

    def _compare_bodies(
        self, primary: CapturedResponse, candidate: CapturedResponse, out: list
    ) -> str:
        pa, perr = decoded_body(primary)
        ca, cerr = decoded_body(candidate)
        if perr or cerr:
            out.append(Difference("body", "body", "incomparable", perr, cerr))
            return "incomparable"
        if not pa and not ca:
            return "empty"
        if not pa or not ca:
            kind = "missing" if not ca else "extra"
            out.append(Difference("body", "body", kind, _size(pa), _size(ca)))
            return body_kind_of(primary if pa else candidate)
        kp, kc = body_kind_of(primary), body_kind_of(candidate)
        if kp != kc:
            out.append(Difference("body", "body", "incomparable", kp, kc))
            return "incomparable"
        if kp == "json":
            try:
                ja, jb = json.loads(pa), json.loads(ca)
            except ValueError as exc:
                which = "primary" if _bad_json(pa) else "candidate"
                out.append(
                    Difference("body", "body", "incomparable", f"invalid JSON in {which}", str(exc))
                )
                return "incomparable"
            out.extend(self.diff_json(ja, jb))
            return "json"
        if kp == "text":
            out.extend(diff_text(_decode(pa, primary), _decode(ca, candidate)))
            return "text"
        if pa != ca:
            out.append(Difference("body", "body", "value", _digest(pa), _digest(ca)))
        return "binary"


def _bad_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return True
    return False


def _size(data: bytes) -> str:
    return f"{len(data)} bytes"


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()[:16]} ({len(data)} bytes)"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _has_float(value: Any) -> bool:
    """Any float inside (`1.0` and `1` are one number; NaN equals NaN)?"""
    t = type(value)
    if t is float:
        return True
    if t is dict:
        return any(_has_float(v) for v in value.values())
    if t is list:
        return any(_has_float(v) for v in value)
    return False


def _index_by(items: list, key: str) -> dict | None:
    index: dict = {}
    for item in items:
        if type(item) is not dict or key not in item:
            return None
        kv = item[key]
        if isinstance(kv, dict | list) or kv in index:
            return None
        index[kv] = item
    return index


def _header_value(resp: CapturedResponse, name: str) -> str | None:
    value = resp.header(name)
    if value is None:
        return None
    if name == "content-type":  # compare the media type, not charset spelling
        return value.split(";", 1)[0].strip().lower()
    return value.strip()


def media_type(resp: CapturedResponse) -> str:
    value = resp.header("content-type") or ""
    return value.split(";", 1)[0].strip().lower()


_TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/x-ndjson",
    "application/yaml",
)


def body_kind_of(resp: CapturedResponse) -> str:
    """json | text | binary, from the declared content type."""
    mt = media_type(resp)
    if mt == "application/json" or mt.endswith("+json"):
        return "json"
    if mt.startswith("text/") or mt.endswith("+xml") or mt in _TEXT_TYPES:
        return "text"
    return "binary"


def decoded_body(resp: CapturedResponse) -> tuple[bytes, str | None]:
    """The body with Content-Encoding undone, or an error naming the encoding that failed."""
    enc = (resp.header("content-encoding") or "").strip().lower()
    body = resp.body
    if not enc or enc == "identity" or not body:
        return body, None
    try:
        for coding in reversed([c.strip() for c in enc.split(",") if c.strip()]):
            if coding in ("gzip", "x-gzip"):
                body = _inflate(body, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                try:
                    body = _inflate(body, zlib.MAX_WBITS)
                except zlib.error:  # raw deflate, as some servers send it
                    body = _inflate(body, -zlib.MAX_WBITS)
            elif coding == "br":
                if brotli is None:
                    return b"", "content-encoding br (install brotli to compare it)"
                body = brotli.decompress(body)
            elif coding != "identity":
                return b"", f"unsupported content-encoding {coding!r}"
    except (zlib.error, ValueError, OSError) as exc:
        return b"", f"cannot decode content-encoding {enc!r}: {exc}"
    return body, None


def _inflate(data: bytes, wbits: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, MAX_DECOMPRESSED)
    if d.unconsumed_tail:
        raise ValueError(f"decompressed body exceeds {MAX_DECOMPRESSED} bytes")
    return out


def _decode(data: bytes, resp: CapturedResponse) -> str:
    charset = "utf-8"
    for part in (resp.header("content-type") or "").split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "charset" and v:
            charset = v.strip('"')
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def diff_text(primary: str, candidate: str) -> list[Difference]:
    """Line-by-line differences; paths are `line:N` (1-based, primary's numbering)."""
    if primary == candidate:
        return []
    la, lb = primary.splitlines(), candidate.splitlines()
    if len(la) > MAX_TEXT_LINES or len(lb) > MAX_TEXT_LINES:
        return [
            Difference(
                "body", "body", "value", _digest(primary.encode()), _digest(candidate.encode())
            )
        ]
    out: list[Difference] = []
    matcher = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace":
            for k in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + k, j1 + k
                pa = la[i] if i < i2 else None
                pb = lb[j] if j < j2 else None
                line = i + 1 if i < i2 else i2 + 1
                kind = (
                    "value"
                    if pa is not None and pb is not None
                    else "missing"
                    if pb is None
                    else "extra"
                )
                out.append(Difference(f"line:{line}", f"line:{line}", kind, clip(pa), clip(pb)))
        elif op == "delete":
            for i in range(i1, i2):
                out.append(
                    Difference(f"line:{i + 1}", f"line:{i + 1}", "missing", clip(la[i]), None)
                )
        elif op == "insert":
            for j in range(j1, j2):
                out.append(
                    Difference(f"line:{i1 + 1}", f"line:{i1 + 1}", "extra", None, clip(lb[j]))
                )
    if not out:  # same lines, different line endings
        out.append(Difference("body", "body", "value", "line endings differ", None))
    return out


def compare(
    primary: CapturedResponse, candidate: CapturedResponse, rules: Rules | None = None
) -> Comparison:
    """One-shot comparison; routes compile a `Differ` once and reuse it instead."""
    return Differ(rules).compare(primary, candidate)


def diff_json(primary: Any, candidate: Any, rules: Rules | None = None) -> list[Difference]:
    """One-shot structural JSON diff."""
    return Differ(rules).diff_json(primary, candidate)
