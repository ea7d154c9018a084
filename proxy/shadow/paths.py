"""Field paths (`$.items[3].total`) and the wildcard patterns rules are written in.

Concrete paths name one value in a JSON document; patterns add `*` (any one key or position)
and `..` (any depth) so a rule like `$.items[*].etag` or `$..trace_id` covers every element.
Patterns compile to a small NFA that the comparator steps along as it descends, so documents
that no rule touches pay nothing for rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


@dataclass(frozen=True, slots=True)
class Keyed:
    """An element of a list compared as a set: addressed by its key field, not its position."""

    key: str
    value: object

    def __str__(self) -> str:
        return f"[{self.key}={json.dumps(self.value, ensure_ascii=False)}]"


Segment = str | int | Keyed


def format_path(segments: Sequence[Segment]) -> str:
    """`["items", 3, "total"]` -> `$.items[3].total`."""
    out = ["$"]
    for seg in segments:
        if type(seg) is int:
            out.append(f"[{seg}]")
        elif type(seg) is str:
            out.append(f".{seg}" if _IDENT.fullmatch(seg) else f"[{json.dumps(seg)}]")
        else:
            out.append(str(seg))
    return "".join(out)


def generalize(segments: Sequence[Segment]) -> str:
    """The path with every list position replaced by `[*]`, for counting a field across samples."""
    out = ["$"]
    for seg in segments:
        if type(seg) is str:
            out.append(f".{seg}" if _IDENT.fullmatch(seg) else f"[{json.dumps(seg)}]")
        else:
            out.append("[*]")
    return "".join(out)


# Pattern tokens.
KEY, IDX, ANY, DEEP, KEYED = "key", "idx", "any", "deep", "keyed"
Token = tuple


class PathSyntaxError(ValueError):
    """A field path in a shadow rule could not be parsed."""


def parse_pattern(pattern: str) -> tuple[Token, ...]:
    """Parse `$.a[*].b`, `$..etag`, `$["odd key"][0]`, `$.items[id=17]` into tokens.

    Raises PathSyntaxError naming the column and what was expected, so a config loader can
    point at the offending rule.
    """
    if not pattern.startswith("$"):
        raise PathSyntaxError(
            f"field path {pattern!r} must start with '$' (e.g. '$.items[*].etag')"
        )
    tokens: list[Token] = []
    i, n = 1, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("..", i):
            tokens.append((DEEP,))
            i += 2
            i = _parse_name(pattern, i, tokens, after_dots=True)
        elif ch == ".":
            i = _parse_name(pattern, i + 1, tokens, after_dots=False)
        elif ch == "[":
            end = _bracket_end(pattern, i)
            inner = pattern[i + 1 : end].strip()
            tokens.append(_bracket_token(pattern, i, inner))
            i = end + 1
        else:
            raise PathSyntaxError(
                f"field path {pattern!r}: unexpected {ch!r} at column {i + 1}; "
                "expected '.name', '[index]', '[*]' or '..'"
            )
    return tuple(tokens)


def _parse_name(pattern: str, i: int, tokens: list[Token], *, after_dots: bool) -> int:
    if i < len(pattern) and pattern[i] == "*":
        tokens.append((ANY,))
        return i + 1
    if after_dots and i < len(pattern) and pattern[i] == "[":
        return i  # `$..[0]`
    m = _IDENT.match(pattern, i)
    if not m:
        raise PathSyntaxError(
            f"field path {pattern!r}: expected a field name or '*' at column {i + 1} "
            '(quote unusual names as ["name"])'
        )
    tokens.append((KEY, m.group(0)))
    return m.end()


def _bracket_end(pattern: str, start: int) -> int:
    quote = None
    i = start + 1
    while i < len(pattern):
        ch = pattern[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "]":
            return i
        i += 1
    raise PathSyntaxError(f"field path {pattern!r}: '[' at column {start + 1} is never closed")


def _bracket_token(pattern: str, col: int, inner: str) -> Token:
    if inner == "*":
        return (ANY,)
    if inner.lstrip("-").isdigit():
        return (IDX, int(inner))
    if inner[:1] in "'\"" and inner[-1:] == inner[:1] and len(inner) >= 2:
        body = inner[1:-1]
        if inner[0] == "'":
            body = body.replace('"', '\\"').replace("\\'", "'")
        return (KEY, json.loads(f'"{body}"'))
    if "=" in inner:
        key, _, raw = inner.partition("=")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.strip("'")
        return (KEYED, key.strip(), value)
    raise PathSyntaxError(
        f"field path {pattern!r}: cannot read [{inner}] at column {col + 1}; "
        "expected [3], [*], ['name'] or [key=value]"
    )


def _token_matches(tok: Token, seg: Segment) -> bool:
    kind = tok[0]
    if kind == ANY:
        return True
    if kind == KEY:
        return type(seg) is str and seg == tok[1]
    if kind == IDX:
        return type(seg) is int and seg == tok[1]
    if kind == KEYED:
        return type(seg) is Keyed and seg.key == tok[1] and seg.value == tok[2]
    return False


State = tuple[tuple[int, int], ...]


class PatternSet:
    """Patterns tagged with a payload, matched incrementally one segment at a time.

    `start` is the state at the document root; `step(state, seg)` descends; `accepted(state)`
    lists the payloads of the patterns that match exactly here. An empty state means no
    pattern can match anywhere below, which the comparator uses to skip all rule checks.
    """

    __slots__ = ("_pats", "_tags", "start", "_step_cache", "_accept_cache")

    def __init__(self, tagged: Sequence[tuple[str, object]]) -> None:
        self._pats = [parse_pattern(p) for p, _ in tagged]
        self._tags = [tag for _, tag in tagged]
        self._step_cache: dict[tuple[State, Segment], State] = {}
        self._accept_cache: dict[State, tuple[object, ...]] = {}
        self.start: State = self._closure({(i, 0) for i in range(len(self._pats))})

    def _closure(self, states: set[tuple[int, int]]) -> State:
        todo = list(states)
        seen = set(states)
        while todo:
            pid, pos = todo.pop()
            pat = self._pats[pid]
            if pos < len(pat) and pat[pos][0] == DEEP and (pid, pos + 1) not in seen:
                seen.add((pid, pos + 1))
                todo.append((pid, pos + 1))
        return tuple(sorted(seen))

    def step(self, state: State, seg: Segment) -> State:
        if not state:
            return state
        key = (state, seg)
        try:
            return self._step_cache[key]
        except (KeyError, TypeError):
            pass
        nxt: set[tuple[int, int]] = set()
        for pid, pos in state:
            pat = self._pats[pid]
            if pos >= len(pat):
                continue
            tok = pat[pos]
            if tok[0] == DEEP:
                nxt.add((pid, pos))
            elif _token_matches(tok, seg):
                nxt.add((pid, pos + 1))
        result = self._closure(nxt) if nxt else ()
        if len(self._step_cache) > 50_000:
            self._step_cache.clear()
        try:
            self._step_cache[key] = result
        except TypeError:
            pass
        return result

    def accepted(self, state: State) -> tuple[object, ...]:
        if not state:
            return ()
        try:
            return self._accept_cache[state]
        except KeyError:
            pass
        tags = tuple(self._tags[pid] for pid, pos in state if pos == len(self._pats[pid]))
        self._accept_cache[state] = tags
        return tags


def matches(pattern: str, path_segments: Sequence[Segment]) -> bool:
    """Whether one pattern matches a concrete path (convenience for tests and the report)."""
    ps = PatternSet([(pattern, True)])
    state = ps.start
    for seg in path_segments:
        state = ps.step(state, seg)
        if not state:
            return False
    return bool(ps.accepted(state))


_KEY_IN_PATH = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[\"((?:[^\"\\]|\\.)*)\"\]")


def keys_in_path(path: str) -> list[str]:
    """The object keys named along a concrete path (`$.a[2]["b c"]` -> ["a", "b c"])."""
    out = []
    for m in _KEY_IN_PATH.finditer(path):
        if m.group(1) is not None:
            out.append(m.group(1))
        else:
            try:
                out.append(json.loads(f'"{m.group(2)}"'))
            except ValueError:
                out.append(m.group(2))
    return out
