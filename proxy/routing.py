"""Route matching: which route owns a request. Pure; no I/O, no aiohttp.

The table is compiled once per config load into indexes so a lookup costs a few dict
probes instead of a regex scan over every route:

* exact paths: one dict;
* templates (`/api/customers/{id}`): a segment trie, literal children tried before `{param}`;
* prefixes: one dict keyed by prefix, probed from the longest segment-aligned prefix of
  the request path down to "/";
* regexes: bucketed by the literal first segment they require, when they have one.

Specificity, most specific first: exact path, template, regex, prefix (longer before
shorter). At the same path specificity, a route with method/header/host conditions is
tried before one without; remaining ties go to file order. A route whose conditions fail
lets the next candidate try, down to the table's default upstream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.config.model import HeaderMatch, Match, Route
from proxy.pathsafety import without_params

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_REGEX_META = set(".^$*+?{}[]\\|()")
_EMPTY: Mapping[str, str] = MappingProxyType({})


def template_params(path: str) -> list[str]:
    """The `{param}` names of a path template, in order."""
    return [m.group(1) for seg in path.split("/") if (m := _PARAM.match(seg))]


def is_template(path: str) -> bool:
    return "{" in path


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/") if path != "/" else []


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    param_name: str | None = None
    routes: list[tuple[Route, tuple[str, ...]]] = field(default_factory=list)


def _conditions_rank(route: Route) -> int:
    return 0 if route.match.has_conditions else 1


class _Conditions:
    """A route's method/header/host predicate, compiled once."""

    __slots__ = ("methods", "headers", "host")

    def __init__(self, match: Match) -> None:
        self.methods = match.methods
        self.host = match.host
        self.headers: tuple[tuple[str, Callable[[str], bool]], ...] = tuple(
            (h.name, _header_predicate(h)) for h in match.headers
        )

    def accept(self, method: str, host: str, headers: Mapping[str, str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is not None and host != self.host:
            return False
        for name, predicate in self.headers:
            value = headers.get(name)
            if value is None or not predicate(value):
                return False
        return True


def _conditions(match: Match) -> _Conditions | None:
    if match.methods is None and match.host is None and not match.headers:
        return None
    return _Conditions(match)


def _header_predicate(h: HeaderMatch) -> Callable[[str], bool]:
    if h.regex is not None:
        pattern = re.compile(h.regex)
        return lambda v: pattern.fullmatch(v) is not None
    expected = h.value
    return lambda v: v == expected


class AmbiguousPath(ValueError):
    """A path whose `;` parameters change its route: answered 400 (see `RouteTable.match`)."""


@dataclass(slots=True)
class RouteMatch:
    route: Route
    params: Mapping[str, str]


class RouteTable:
    """The compiled, immutable route table of one config load."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        # Sort once: conditions first, then file order (the sort is stable).
        ordered = sorted(self.routes, key=_conditions_rank)
        # None: a route without conditions accepts every request (no call to find that out).
        self._conditions = {id(r): _conditions(r.match) for r in self.routes}
        # What any route's `headers` condition reads: requests are only searched for these.
        self.header_names = frozenset(h.name for r in self.routes for h in r.match.headers)
        self._exact: dict[str, list[Route]] = {}
        self._trie = _Node()
        self._prefix: dict[str, list[Route]] = {}
        self._regex_by_seg: dict[str, list[tuple[Route, re.Pattern[str]]]] = {}
        self._regex_any: list[tuple[Route, re.Pattern[str]]] = []
        self._has_regex = False
        for route in ordered:
            m = route.match
            if m.path is not None and not is_template(m.path):
                # Keyed without a trailing `/`, as templates match: an upstream that serves
                # `/login/` as `/login` must not get it past the route's auth and limits.
                self._exact.setdefault(m.path.rstrip("/") or "/", []).append(route)
            elif m.path is not None:
                self._add_template(route, m.path)
            elif m.prefix is not None:
                self._prefix.setdefault(m.prefix.rstrip("/") or "/", []).append(route)
            elif m.regex is not None:
                self._has_regex = True
                pattern = re.compile(m.regex)
                seg = _literal_first_segment(m.regex)
                if seg is None:
                    self._regex_any.append((route, pattern))
                else:
                    self._regex_by_seg.setdefault(seg, []).append((route, pattern))

    def _add_template(self, route: Route, path: str) -> None:
        node = self._trie
        names: list[str] = []
        for seg in _segments(path):
            pm = _PARAM.match(seg)
            if pm:
                if node.param is None:
                    node.param = _Node()
                names.append(pm.group(1))
                node = node.param
            else:
                node = node.literal.setdefault(seg, _Node())
        node.routes.append((route, tuple(names)))

    def match(
        self, method: str, path: str, host: str = "", headers: Mapping[str, str] = _EMPTY
    ) -> RouteMatch | None:
        """The most specific route accepting this request, or None (the default upstream).

        `path` must already be normalized (see `proxy.pathsafety`); `host` lower-case
        without port; `headers` keyed by lower-case name. Raises `AmbiguousPath` when the
        path's `;` parameters decide the route: servers that drop them (Tomcat, Jetty,
        Spring) would serve what another route owns, so routing and forwarding would
        disagree.
        """
        found = self._first(method, path, host, headers)
        if ";" in path:
            bare = without_params(path)
            if bare != path:
                other = self._first(method, bare, host, headers)
                if (other.route if other else None) is not (found.route if found else None):
                    raise AmbiguousPath(
                        f"path parameters (';') in {path!r}: without them the path is "
                        f"{bare!r}, which another route owns"
                    )
        return found

    def _first(
        self, method: str, path: str, host: str, headers: Mapping[str, str]
    ) -> RouteMatch | None:
        """The most specific candidate whose conditions accept the request: exact, template
        (literal segments before `{param}`), regex, prefix (longest first), each in table
        order. Plain loops and recursion: the generators this was written with (resumed,
        then closed, at every level of the trie) cost about three quarters of a lookup."""
        conditions = self._conditions
        exact = self._exact.get(path.rstrip("/") or "/")
        if exact:
            for route in exact:
                c = conditions[id(route)]
                if c is None or c.accept(method, host, headers):
                    return RouteMatch(route, _EMPTY)
        segments = _segments(path)
        trie = self._trie
        if trie.literal or trie.param or trie.routes:
            found = self._walk(trie, segments, 0, [], method, host, headers)
            if found is not None:
                return found
        if self._has_regex:
            first = segments[0] if segments else ""
            for pairs in (self._regex_by_seg.get(first, ()), self._regex_any):
                for route, pattern in pairs:
                    m = pattern.fullmatch(path)
                    if m:
                        c = conditions[id(route)]
                        if c is None or c.accept(method, host, headers):
                            params = {k: v for k, v in m.groupdict().items() if v is not None}
                            return RouteMatch(route, MappingProxyType(params))
        if self._prefix:
            for n in range(len(segments), -1, -1):
                key = "/" + "/".join(segments[:n]) if n else "/"
                routes = self._prefix.get(key)
                if routes:
                    for route in routes:
                        c = conditions[id(route)]
                        if c is None or c.accept(method, host, headers):
                            return RouteMatch(route, _EMPTY)
        return None

    def _walk(
        self,
        node: _Node,
        segments: list[str],
        i: int,
        values: list[str],
        method: str,
        host: str,
        headers: Mapping[str, str],
    ) -> RouteMatch | None:
        if i == len(segments):
            for route, names in node.routes:
                c = self._conditions[id(route)]
                if c is None or c.accept(method, host, headers):
                    # As many names as values: both are one per `{param}` edge down to
                    # here. (`zip(strict=True)`, a keyword call, cost more than the rest.)
                    one = len(names) == 1
                    params = {names[0]: values[0]} if one else dict(zip(names, values))  # noqa: B905
                    return RouteMatch(route, MappingProxyType(params))
            return None
        seg = segments[i]
        child = node.literal.get(seg)
        if child is not None:
            found = self._walk(child, segments, i + 1, values, method, host, headers)
            if found is not None:
                return found
        if node.param is not None and seg:
            values.append(seg)
            found = self._walk(node.param, segments, i + 1, values, method, host, headers)
            values.pop()
            return found
        return None


def _literal_first_segment(regex: str) -> str | None:
    """The literal first path segment a regex requires, if it plainly has one.

    `^/api/(?P<x>...)` requires "api"; `/(a|b)/x` has none. Used only to bucket regex
    routes; a regex without a literal first segment is tried on every request.
    """
    body = regex[1:] if regex.startswith("^") else regex
    if not body.startswith("/"):
        return None
    seg = []
    for ch in body[1:]:
        if ch == "/":
            break
        if ch in _REGEX_META:
            return None
        seg.append(ch)
    else:
        # the regex ends inside the first segment: it must be that whole literal
        pass
    return "".join(seg)


def _specificity_key(route: Route) -> tuple[int, str]:
    m = route.match
    if m.path is not None:
        # normalize param names (/a/{id} and /a/{x} cover the same paths) and a trailing
        # slash (matched either way)
        return (0, re.sub(r"\{[^}]*\}", "{}", m.path).rstrip("/") or "/")
    if m.regex is not None:
        return (2, m.regex)
    return (3, (m.prefix or "/").rstrip("/") or "/")


def _covers(general: Match, specific: Match) -> bool:
    """True when every request `specific` accepts is also accepted by `general`'s conditions."""
    if general.methods is not None and (
        specific.methods is None or not specific.methods <= general.methods
    ):
        return False
    if general.host is not None and general.host != specific.host:
        return False
    return set(general.headers) <= set(specific.headers)


def find_unreachable(routes: Sequence[Route]) -> list[tuple[Route, Route]]:
    """Routes that can never match: (unreachable, covering) pairs.

    A route is unreachable when another route with the same path pattern is tried first
    (conditions first, then file order) and accepts everything it accepts. Routes with
    different patterns overlap only partially (a prefix still serves paths a template
    does not), so they never make each other unreachable.
    """
    ordered = sorted(routes, key=_conditions_rank)
    by_key: dict[tuple[int, str], list[Route]] = {}
    found: list[tuple[Route, Route]] = []
    for route in ordered:
        bucket = by_key.setdefault(_specificity_key(route), [])
        for earlier in bucket:
            if _covers(earlier.match, route.match):
                found.append((route, earlier))
                break
        bucket.append(route)
    return found
