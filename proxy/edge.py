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
from proxy.pathsafety import UnsafePath, normalize_path, parse_target

SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})


class Refused(Exception):
    """Answer `status` with `message` and close the connection; nothing goes upstream."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class EdgeRequest:
    """What the rest of the pipeline may rely on."""

    path: str  # normalized: what is routed is what is forwarded
    query: str  # raw, forwarded byte for byte
    host_header: str  # as forwarded (an absolute-form target's authority wins)
    host: str  # lower-case, without port or trailing dot: what routes match
    expect_continue: bool  # answer `100 Continue` before reading the body
    asterisk: bool = False  # `OPTIONS *`: answered by the proxy itself


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
    if method == "TRACE":
        # TRACE echoes cookies, tokens and the proxy's own forwarding headers back.
        raise Refused(405, "TRACE is disabled at the edge", {"Allow": allowed_methods})
    try:
        target = parse_target(method, raw_target)
        if target.form == "asterisk":
            return EdgeRequest("*", "", "", "", False, asterisk=True)
        path = normalize_path(target.path)
    except UnsafePath as exc:
        raise Refused(400, f"rejected request target: {exc}") from None
    if len(hosts) > 1 or (not hosts and version >= (1, 1)):
        raise Refused(400, "exactly one Host header is required")
    # RFC 9112 §3.2.2: an absolute-form target's authority replaces Host, for routing and
    # for what is forwarded alike.
    host_header = target.authority or (hosts[0] if hosts else "")
    if (host_header or version >= (1, 1)) and not valid_host(host_header):
        raise Refused(400, f"invalid Host {host_header!r}: expected host[:port]")
    expect = expectation(version, headers)
    if expect == "reject":
        raise Refused(417, "only 'Expect: 100-continue' is supported")
    return EdgeRequest(
        path, target.query, host_header, bare_host(host_header), expect == "continue"
    )


def bare_host(host_header: str) -> str:
    """Lower-case host without port or trailing dot (IPv6 literals keep their brackets)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[: end + 1] if end > 0 else h
    if ":" in h:
        h = h.rsplit(":", 1)[0]
    return h[:-1] if h.endswith(".") else h
