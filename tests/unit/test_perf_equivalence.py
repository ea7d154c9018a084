"""Property tests: the fast access-line writer and the response head builder write what
the code before them wrote (1ca36c4: `json_access_fields`; 65ef8b9: `response_head`), and
the route lookup finds what its generator search found."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from types import MappingProxyType

from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.config.model import HeaderMatch, Match, Route
from proxy.filters.headers import HOP_BY_HOP
from proxy.http1 import CHUNKED, EMPTY, LENGTH, UNTIL_CLOSE, response_head
from proxy.routing import RouteTable
from proxy.telemetry.logging import json_access_fields

# -- (1) the access line ------------------------------------------------------------------

_ODD = '\x00\x01\x1f\x7f\x80\x9f\u2028\u2029\ud800\udfff\udc80"\\/\b\f\n\r\t\ufeff\uffff'
_text = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)),
    st.text(st.sampled_from(_ODD + "aé€😀")),
    st.builds(
        lambda s, n: s * n, st.text(st.sampled_from(_ODD + "ab"), min_size=1), st.integers(1, 3000)
    ),
)


class _Str(str):
    def __str__(self) -> str:  # the encoder must not call it
        return "other"


class _Enum(enum.StrEnum):
    A = 'a\u2028"'


class _Int(int):
    def __repr__(self) -> str:
        return "other"


_ints = st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 10**100]))
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.0, 1e-7, 1e16, 1e308, 5e-324, 0.1, float("nan"), -math.inf]),
)
_any = st.one_of(
    st.none(),
    _text,
    _text.map(_Str),
    st.just(_Enum.A),
    st.booleans(),
    _ints,
    _ints.map(_Int),
    _floats,
    st.binary(max_size=4),
    st.tuples(st.text(max_size=3), st.integers(0, 65535)),
)
_text_or_none = st.one_of(st.none(), _text)

_KEYS = ("request_id", "trace_id", "route", "mode", "side", "upstream", "method", "path")
_KEYS += ("status", "duration_ms", "bytes_out", "tenant")
_EXTRA = ("query", "bytes_in", "client", "fallback", "error")


def _old_line(values: Sequence[object], extras: Sequence[object]) -> str:
    """What `request_finished` wrote before 1ca36c4: its dict through `json.dumps`."""
    fields = dict(zip(_KEYS, values, strict=True))
    for name, value in zip(_EXTRA, extras, strict=True):
        if value is not None:
            fields[name] = value
    return json.dumps(fields, separators=(",", ":"), default=str)


@settings(max_examples=250, deadline=None)
@given(
    st.tuples(*[st.one_of(_text_or_none, _any) for _ in range(8)]),
    st.one_of(st.integers(100, 599), _any),
    st.one_of(_floats, _any),
    st.one_of(_ints, _any),
    st.one_of(_text_or_none, _any),
    st.tuples(
        st.one_of(_text_or_none, _any),
        st.one_of(st.none(), _ints, _any),
        st.one_of(_text_or_none, _any),
        st.one_of(_text_or_none, _any),
        st.one_of(_text_or_none, _any),
    ),
)
def test_access_fields_are_json_dumps_of_the_fields(
    text8, status, duration, bytes_out, tenant, extras
):
    values = (*text8, status, duration, bytes_out, tenant)
    try:
        old = _old_line(values, extras)
    except ValueError:  # an int of more digits than int() prints: it failed before, too
        old = None
    try:
        new = json_access_fields(*values, *extras)
    except ValueError:
        assert old is None
        return
    if new is None:
        return  # the dict and the encoder, as before
    assert new == old
    json.loads(new)  # one valid JSON object
    assert "\n" not in new and "\u2028" not in new and "\ud800" not in new


@settings(max_examples=100, deadline=None)
@given(st.tuples(*[_text for _ in range(8)]), _text, st.tuples(*[_text_or_none for _ in range(5)]))
def test_access_fields_of_text_are_always_written_directly(text8, tenant, extras):
    """The usual case (text, an int status, a finite float): never the slow path."""
    extras = (extras[0], 12, *extras[2:])
    values = (*text8, 200, 1.5, 7, tenant)
    new = json_access_fields(*values, *extras)
    assert new == _old_line(values, extras)
    # As json.loads reads what json.dumps wrote (a pair of lone surrogates reads back as
    # the one character they encode, so not always text8[7] itself).
    assert json.loads(new)["path"] == json.loads(json.dumps(text8[7]))


# -- (3) the response head ----------------------------------------------------------------

_HOP = tuple(name.encode() for name in HOP_BY_HOP)
_OLD_ROLE_NAMES = (b"x-request-id", b"content-length", b"date", b"server", b"connection")
_NAMES = (
    *_OLD_ROLE_NAMES,
    *_HOP,
    b"transfer-encoding",
    b"keep-alive",
    b"content-type",
    b"etag",
    b"set-cookie",
    b"x-foo",
    b"x-request-idx",
)


def _case(name: bytes, flips: list[bool]) -> bytes:
    return bytes(
        c ^ 0x20 if flip and (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A) else c
        for c, flip in zip(name, flips + [False] * len(name), strict=False)
    )


_spelled = st.one_of(
    st.sampled_from(_NAMES).map(lambda n: n.title()),
    st.sampled_from(_NAMES),
    st.sampled_from([b"X-Request-ID", b"X-Request-Id", b"ETag", b"Etag", b"CONTENT-LENGTH"]),
    st.builds(_case, st.sampled_from(_NAMES), st.lists(st.booleans(), max_size=30)),
)
_value = st.one_of(
    st.sampled_from(
        [
            b"close",
            b"keep-alive",
            b"Keep-Alive",
            b"upgrade",
            b"x-foo",
            b"X-Foo, date",
            b"content-length",
            b"Server",
            b"12",
            b" 3 ",
            b"chunked",
            b"",
            b"x-request-id",
        ]
    ),
    st.binary(max_size=8).filter(lambda v: b"\r" not in v and b"\n" not in v),
)
_headers = st.lists(st.tuples(_spelled, _value), max_size=12)
_reason = st.one_of(
    st.sampled_from(["OK", "", "Not Modified", "No Content", "Early Hints", "\udcff x", "é"]),
    st.text(max_size=80).filter(lambda r: "\r" not in r and "\n" not in r),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([(1, 0), (1, 1)]),
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.one_of(st.sampled_from([100, 101, 103, 200, 204, 304, 404, 502]), st.integers(100, 599)),
    _reason,
    _headers,
    st.one_of(st.none(), st.sampled_from([b"rid-1", b"X"])),
    st.booleans(),
)
def test_response_head_is_the_old_builders(version, method, status, reason, headers, rid, keep):
    for _ in range(2):  # the second time from the memoized status line
        new = response_head(
            version, method, status, reason, headers, rid, keep_alive=keep, date=b"D"
        )
        old = _old_response_head(
            version, method, status, reason, headers, rid, keep_alive=keep, date=b"D"
        )
        assert (new.data, new.framing, new.keep_alive) == old


# The builder as it was before 65ef8b9 (`git show 65ef8b9^:proxy/http1.py`), its result a tuple;
# since then every status line says HTTP/1.1, and a close is said to 1.0 clients too.
_DROP, _ID, _LEN, _DATE, _SRV, _CONN = range(6)
_ROLE = {name: _DROP for name in _HOP} | {
    b"x-request-id": _ID,
    b"content-length": _LEN,
    b"date": _DATE,
    b"server": _SRV,
    b"connection": _CONN,
}


def _listed(raw_headers):
    names = set()
    for name, value in raw_headers:
        if name.lower() == b"connection":
            for part in value.split(b","):
                part = part.strip().lower()
                if part:
                    names.add(part)
    return frozenset(names)


def _old_response_head(
    version, method, status, reason, raw_headers, request_id, *, keep_alive, date, listed=None
):
    from proxy.http1 import _SERVER

    empty = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("utf-8", "surrogateescape"))]
    has_id = has_date = has_server = False
    length = None
    for name, value in raw_headers:
        lname = name.lower()
        if listed is not None and lname in listed:
            continue
        role = _ROLE.get(lname)
        if role is not None:
            if role == _DROP:
                continue
            if role == _CONN:
                if listed is None and value.lower() not in (b"keep-alive", b"upgrade"):
                    return _old_response_head(
                        version,
                        method,
                        status,
                        reason,
                        raw_headers,
                        request_id,
                        keep_alive=keep_alive,
                        date=date,
                        listed=_listed(raw_headers),
                    )
                continue
            if role == _ID:
                if request_id is not None:
                    if not has_id:
                        has_id = True
                        out.append(b"X-Request-ID: " + request_id + b"\r\n")
                    continue
            elif role == _LEN:
                if status in (204, 304) or status < 200 or length is not None:
                    continue
                length = value.strip()
            elif role == _DATE:
                has_date = True
            else:
                has_server = True
        out.append(name + b": " + value + b"\r\n")
    if not has_id and request_id is not None:
        out.append(b"X-Request-ID: " + request_id + b"\r\n")
    if empty:
        framing = EMPTY
    elif length is not None:
        framing = LENGTH
    elif version >= (1, 1):
        framing = CHUNKED
        out.append(b"Transfer-Encoding: chunked\r\n")
    else:
        framing = UNTIL_CLOSE
        keep_alive = False
    if not has_date:
        out.append(b"Date: " + date + b"\r\n")
    if not has_server:
        out.append(b"Server: " + _SERVER + b"\r\n")
    if keep_alive:
        if version == (1, 0):
            out.append(b"Connection: keep-alive\r\n")
    else:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out), framing, keep_alive


# -- (4) route lookup ---------------------------------------------------------------------

_SEGMENTS = ("a", "b", "7", "")  # few: routes overlap, and requests meet them


def _old_first(table, method, path, host, headers):
    """`RouteTable._first` before it was written without generators: the first of
    `_candidates` (`git show HEAD~:proxy/routing.py`) whose conditions accept."""
    from proxy.routing import _EMPTY, _Conditions, _segments

    def walk(node, segments, i, values):
        if i == len(segments):
            for route, names in node.routes:
                yield route, MappingProxyType(dict(zip(names, values, strict=True)))
            return
        seg = segments[i]
        child = node.literal.get(seg)
        if child is not None:
            yield from walk(child, segments, i + 1, values)
        if node.param is not None and seg:
            values.append(seg)
            yield from walk(node.param, segments, i + 1, values)
            values.pop()

    def candidates(path):
        exact = table._exact.get(path.rstrip("/") or "/")
        if exact:
            for route in exact:
                yield route, _EMPTY
        segments = _segments(path)
        if table._trie.literal or table._trie.param or table._trie.routes:
            yield from walk(table._trie, segments, 0, [])
        if table._has_regex:
            first = segments[0] if segments else ""
            for route, pattern in (*table._regex_by_seg.get(first, ()), *table._regex_any):
                m = pattern.fullmatch(path)
                if m:
                    groups = {k: v for k, v in m.groupdict().items() if v is not None}
                    yield route, MappingProxyType(groups)
        if table._prefix:
            for n in range(len(segments), -1, -1):
                key = "/" + "/".join(segments[:n]) if n else "/"
                for route in table._prefix.get(key) or ():
                    yield route, _EMPTY

    for route, params in candidates(path):
        if _Conditions(route.match).accept(method, host, headers):
            return route, dict(params)
    return None


_path = st.lists(st.sampled_from(_SEGMENTS), max_size=4).map(lambda s: "/" + "/".join(s))
_pattern = st.one_of(
    _path.map(lambda p: ("path", p)),
    st.lists(st.sampled_from(_SEGMENTS[:-1] + ("{id}", "{n}")), min_size=1, max_size=4).map(
        lambda s: ("path", "/" + "/".join(dict.fromkeys(s)))  # a param name at most once
    ),
    _path.map(lambda p: ("prefix", p)),
    st.sampled_from(
        [
            ("regex", r"^/a/(?P<rest>.*)$"),
            ("regex", r"/(?P<x>a|b)/(?P<n>[0-9]+)?.*"),
            ("regex", r"/b(/.*)?"),
        ]
    ),
)
_conditions = st.fixed_dictionaries(
    {},
    optional={
        "methods": st.sets(st.sampled_from(["GET", "POST"]), max_size=2).map(frozenset),
        "host": st.sampled_from(["a.example", "b.example"]),
        "headers": st.lists(
            st.builds(
                HeaderMatch,
                name=st.just("x-lane"),
                value=st.sampled_from(["1", "2"]),
            ),
            max_size=1,
        ).map(tuple),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(_pattern, _conditions), max_size=10),
    st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST"]),
            _path,
            st.sampled_from(["", "a.example", "b.example"]),
            st.sampled_from([{}, {"x-lane": "1"}, {"x-lane": "2"}]),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_route_lookup_is_the_old_generator_search(patterns, requests):
    routes = [
        Route(name=f"r{i}", match=Match(**{kind: value}, **conditions))
        for i, ((kind, value), conditions) in enumerate(patterns)
    ]
    table = RouteTable(routes)
    for method, path, host, headers in requests:
        found = table._first(method, path, host, headers)
        new = (found.route, dict(found.params)) if found is not None else None
        assert new == _old_first(table, method, path, host, headers)


# -- (5) the upstream request head, and the names forward_headers drops ---------------------


def _old_request_head(method, target, headers, body):
    """`proxy.client._request_head` before its CR/LF check searched the lines joined
    (`git show HEAD~:proxy/client.py`): a count of each in the whole head."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    has_length = False
    for name, value in headers:
        if ":" in name:
            raise ValueError(f"refusing to send header {name!r}: ':' in its name")
        lname = name.lower()
        if lname == "content-length":
            if has_length:
                continue
            has_length = True
            if isinstance(body, bytes):
                value = str(len(body))
        elif lname == "transfer-encoding":
            continue
        lines.append(f"{name}: {value}\r\n")
    if isinstance(body, bytes):
        if not has_length and (body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")):
            lines.append(f"Content-Length: {len(body)}\r\n")
    elif body is not None and not has_length:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    if head.count("\n") != len(lines) or head.count("\r") != len(lines):
        bad = next((line for line in lines[:-1] if line.count("\n") + line.count("\r") != 2), "")
        raise ValueError(f"refusing to send {bad[:80]!r}: CR or LF inside it")
    return head.encode("latin-1")


def _outcome(fn, *args):
    try:
        return fn(*args)
    except (ValueError, UnicodeEncodeError) as exc:  # the same error, the same words
        return type(exc), str(exc)


_line_text = st.text(st.sampled_from("aZ0 -:;=\r\n\té€"), max_size=90)
_head_names = st.one_of(
    st.sampled_from(["Host", "Content-Length", "content-length", "Transfer-Encoding", "X-A"]),
    _line_text,
)


class _Stream:
    """A streamed body (`_request_head` only asks whether it is bytes)."""


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS"]),
    st.one_of(st.just("/a?b=1"), _line_text),
    st.lists(st.tuples(_head_names, st.one_of(st.just("v"), _line_text)), max_size=8),
    st.one_of(st.none(), st.binary(max_size=3), st.just(_Stream())),
)
def test_request_head_is_the_old_builders(method, target, headers, body):
    from proxy.client import _request_head

    old = _outcome(_old_request_head, method, target, headers, body)
    assert _outcome(_request_head, method, target, headers, body) == old


_drop_sets = st.sampled_from(
    [frozenset(), frozenset({"expect", "x-request-id"}), frozenset({"authorization"})]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            # equal sets made anew each time, as each reload makes them
            _drop_sets.map(lambda s: frozenset(set(s))),
            st.sampled_from([frozenset(), frozenset({"upgrade", "connection"})]),
            st.lists(
                st.tuples(
                    st.sampled_from(
                        ["Host", "Expect", "X-Request-ID", "Authorization", "Upgrade", "Connection"]
                        + ["X-Real-IP", "X-Original-URL", "Forwarded", "Keep-Alive", "A"]
                    ),
                    st.sampled_from(["v", "Upgrade", "keep-alive, A"]),
                ),
                max_size=5,
            ),
        ),
        min_size=1,
        max_size=80,  # past the memo's bound of 64 keys, with repeats
    ),
    st.data(),
)
def test_forward_headers_drops_what_it_dropped_before_its_memo(calls, data):
    """The names dropped are memoized by (trusted, drop, keep): each call forwards what a
    call with nothing memoized (the union built anew, as before) forwards."""
    from proxy.filters import headers as mod

    for trusted, drop, keep, headers in calls:
        if data.draw(st.booleans()):  # now and then past another set of keys
            mod._dropped(not trusted, frozenset({"x-other"}), keep)
        kw = dict(peer="10.0.0.1", scheme="http", host="h", request_id="r", drop=drop, keep=keep)
        warm = mod.forward_headers(headers, trusted=trusted, **kw)
        memo, mod._DROPPED = mod._DROPPED, {}
        try:
            assert warm == mod.forward_headers(headers, trusted=trusted, **kw)
        finally:
            mod._DROPPED = memo


# -- (6) the express path's whole body ------------------------------------------------------


def _old_whole_body(status, raw_headers, payload, method):
    """`proxy.forward.whole_body` before it made one pass (`git show HEAD~:proxy/forward.py`):
    `unrelayable`, then the first `Content-Length`."""
    from proxy.forward import is_small, unrelayable

    if status >= 500 or unrelayable(status, raw_headers) is not None:
        return None
    length = None
    for name, value in raw_headers:
        if len(name) == 14 and name.lower() == b"content-length":
            length = value
            break
    if not is_small(method, status, length):
        return None
    return b"" if method == "HEAD" else payload.read_nowait(-1)


class _Payload:
    def read_nowait(self, n: int) -> bytes:
        assert n == -1
        return b"the body"


_body_names = st.one_of(
    _spelled,
    st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding"]),
    st.sampled_from([b"Content-Length ", b"content-length\t", b"Date ", b"ETag\t", b"", b" "]),
    st.builds(lambda n, ws: n + ws, _spelled, st.sampled_from([b" ", b"\t", b"  "])),
)
_body_values = st.one_of(
    _value,
    st.sampled_from([b"gzip, chunked", b"chunked", b", chunked,", b"identity", b"0", b"70000"]),
    st.sampled_from([b"65536", b"65537", b"\xb2", b"1 2"]),
)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(st.sampled_from([101, 199, 200, 204, 304, 404, 499, 500, 502]), st.integers(0, 700)),
    st.lists(st.tuples(_body_names, _body_values), max_size=10),
    st.sampled_from(["GET", "HEAD", "POST"]),
)
@example(200, [(b"Content-Length", b"2"), (b"content-length", b"70000")], "GET")  # the first
@example(200, [(b"content-length", b"70000"), (b"Content-Length", b"2")], "GET")
def test_whole_body_is_the_old_two_passes(status, headers, method):
    from proxy.forward import whole_body

    old = _old_whole_body(status, headers, _Payload(), method)
    assert whole_body(status, headers, _Payload(), method) == old
