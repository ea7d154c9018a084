"""The edge stage: admit a parsed request, or refuse it before any routing. Pure.

The listener's llhttp parser has already rejected what it can (CL with TE, bad chunk
sizes, obs-fold, bare CR, ...). This stage refuses the rest of what an upstream could read
differently than the proxy did, and settles the one canonical path and Host that routing
and forwarding will both use (docs/proxy.md, "Conformance decisions").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.filters.headers import Header, expectation, framing_problem, valid_host
from proxy.pathsafety import RequestTarget, UnsafePath, normalize_path, parse_target

SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})
# The minor digits of the versions read as HTTP/1.1 (`newer_minor`), and what precedes one.
NEWER_MINORS = b"23456789"
HTTP1_PREFIX = b" HTTP/1."


def newer_minor(data: bytes | bytearray, start: int, end: int) -> int:
    """The index of the minor digit of an `HTTP/1.2` to `HTTP/1.9` version that ends the
    request line beginning at `data[start]`, or -1. The line may stop where `end` does.

    llhttp refuses those versions (400); RFC 9110 §2.5 has a recipient process a higher
    minor version of a major version it implements as the highest minor version it
    implements, HTTP/1.1, as nginx does. The listener then makes that digit `1` and
    parses the line again: only the version is read differently. A version that does not
    end the line after all (`HTTP/1.23`, the line cut after the `2`) is refused then, as
    llhttp wants CRLF right after the version; so is a line llhttp refused for anything
    else."""
    while data.startswith(b"\r\n", start):  # empty lines before it (RFC 9112 §2.2)
        start += 2
    line_end = end
    for stop in (b"\r", b"\n"):
        found = data.find(stop, start, line_end)
        if found >= 0:
            line_end = found
    digit = line_end - 1
    if (
        digit - len(HTTP1_PREFIX) >= start
        and data[digit] in NEWER_MINORS
        and data[digit - len(HTTP1_PREFIX) : digit] == HTTP1_PREFIX
    ):
        return digit
    return -1


class Refused(Exception):
    """Answer `status` with `message` and close the connection; nothing goes upstream."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(slots=True)
class EdgeRequest:
    """What the rest of the pipeline may rely on."""

    path: str  # normalized: what is routed is what is forwarded
    query: str | None  # raw, forwarded byte for byte; None when the target has no '?'
    host_header: str  # as forwarded (an absolute-form target's authority wins)
    host: str  # lower-case, without port or trailing dot: what routes match
    expect_continue: bool  # answer `100 Continue` before reading the body
    asterisk: bool = False  # `OPTIONS *`: answered by the proxy itself
    # An OPTIONS request's `Max-Forwards` (RFC 9110 §7.6.2): 0 is answered by the proxy
    # itself, more is forwarded one lower. None: absent, repeated or not a number.
    max_forwards: int | None = None


def admit(
    method: str,
    raw_target: str,
    version: tuple[int, int],
    headers: Sequence[Header],
    hosts: Sequence[str],
    allowed_methods: str,
) -> EdgeRequest:
    """Check one request's line and headers; raise `Refused` with the answer to give."""
    if version not in SUPPORTED_VERSIONS:
        raise Refused(505, f"HTTP/{version[0]}.{version[1]} is not supported; use HTTP/1.1")
    problem = framing_problem(version, headers)
    if problem is not None:
        raise Refused(*problem)
    if _credentials_repeated(headers):
        raise Refused(400, "more than one Authorization header; send one credential")
    if method == "TRACE":
        # TRACE echoes cookies, tokens and the proxy's own forwarding headers back.
        raise Refused(405, "TRACE is disabled at the edge", {"Allow": allowed_methods})
    try:
        target, path = _target(method, raw_target)
    except UnsafePath as exc:
        raise Refused(400, f"rejected request target: {exc}") from None
    if target.form == "asterisk":
        return EdgeRequest("*", None, "", "", False, asterisk=True)
    if len(hosts) > 1 or (not hosts and version >= (1, 1)):
        raise Refused(400, "exactly one Host header is required")
    # RFC 9112 §3.2.2: an absolute-form target's authority replaces Host, for routing and
    # for what is forwarded alike.
    host_header = target.authority or (hosts[0] if hosts else "")
    host = _host(host_header)
    if (host_header or version >= (1, 1)) and host is None:
        raise Refused(400, f"invalid Host {host_header!r}: expected host[:port]")
    expect = expectation(version, headers)
    if expect == "reject":
        raise Refused(417, "only 'Expect: 100-continue' is supported")
    return EdgeRequest(
        path,
        target.query,
        host_header,
        host or "",
        expect == "continue",
        max_forwards=_max_forwards(headers) if method == "OPTIONS" else None,
    )


def _credentials_repeated(headers: Sequence[Header]) -> bool:
    """Whether `Authorization` comes more than once. Its value is one credential (RFC 9110
    §11.6.2, no list): with two, the `auth:` check and the upstream could each read a
    different one (the first, the last, or both joined), so the token checked need not be
    the token used. nginx refuses it too. (Length first: no lower-casing of other names.)"""
    seen = False
    for name, _ in headers:
        if len(name) == 13 and name.lower() == "authorization":
            if seen:
                return True
            seen = True
    return False


# The largest `Max-Forwards` the proxy forwards (RFC 9110 §7.6.2 lets a hop forward "the
# lesser of" the value less one and its own maximum): no chain of proxies is this long, and a
# value of thousands of digits is never handed to `int` (past 4300 digits it raises).
MAX_FORWARDS = 2**31 - 1


def _max_forwards(headers: Sequence[Header]) -> int | None:
    """The one `Max-Forwards` value; None when absent, repeated or not a decimal number
    (forwarded as it came: RFC 9110 says nothing of a bad value, and no hop can act on it).
    A huge one counts as `MAX_FORWARDS` + 1, so `MAX_FORWARDS` is what goes on."""
    values = [v.strip() for k, v in headers if len(k) == 12 and k.lower() == "max-forwards"]
    if len(values) != 1 or not values[0].isascii() or not values[0].isdigit():
        return None
    digits = values[0].lstrip("0")
    if len(digits) > 10:
        return MAX_FORWARDS + 1
    return min(int(digits or "0"), MAX_FORWARDS + 1)


# Memos of the two pure checks above, by their input: most traffic repeats a few hosts and a
# bounded set of targets, and both checks cost more than the lookup (regexes, splitting).
# Bounded: cleared when full, and long targets are never kept.
_MEMO_SIZE = 4096
_MEMO_LONGEST = 1024
_targets: dict[tuple[str, str], tuple[RequestTarget, str]] = {}
_hosts: dict[str, str | None] = {}


def _target(method: str, raw_target: str) -> tuple[RequestTarget, str]:
    """`parse_target` and the normalized path (raises `UnsafePath`)."""
    key = (method, raw_target)
    known = _targets.get(key)
    if known is None:
        target = parse_target(method, raw_target)
        known = (target, "*" if target.form == "asterisk" else normalize_path(target.path))
        if len(raw_target) <= _MEMO_LONGEST:
            if len(_targets) >= _MEMO_SIZE:
                _targets.clear()
            _targets[key] = known
    return known


def _host(host_header: str) -> str | None:
    """`bare_host` of a valid Host, None for an invalid one."""
    try:
        return _hosts[host_header]
    except KeyError:
        pass
    host = bare_host(host_header) if valid_host(host_header) else None
    if len(host_header) <= _MEMO_LONGEST:
        if len(_hosts) >= _MEMO_SIZE:
            _hosts.clear()
        _hosts[host_header] = host
    return host


def bare_host(host_header: str) -> str:
    """Lower-case host without port or trailing dot (IPv6 literals keep their brackets)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[: end + 1] if end > 0 else h
    if ":" in h:
        h = h.rsplit(":", 1)[0]
    return h[:-1] if h.endswith(".") else h
