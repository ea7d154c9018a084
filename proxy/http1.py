"""HTTP/1.x response heads for the fast lane. Pure.

The rules are those of aiohttp's server (`StreamResponse._prepare_headers`), which writes
every response of the other lane, so a client cannot tell which lane answered it: hop-by-hop
headers dropped, `X-Request-ID` replacing the upstream's, `Content-Length` kept from the
upstream (and dropped where RFC 9110 forbids it), chunked framing for a body of unknown
length to an HTTP/1.1 client and a close-delimited one for HTTP/1.0, `Date` and `Server`
when the upstream sent none, and `Connection` where 1.1's default does not hold. The
status line says `HTTP/1.1` whatever the request's version (RFC 9110 §2.5; the other lane's
writer does the same, `proxy.aiohttp_lane.Http10Writer`).
Unlike aiohttp, no default `Content-Type`: a proxy passes the upstream's, or its absence.
Values are passed byte for byte: nothing is decoded and encoded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from proxy.filters.headers import HOP_BY_HOP

RawHeader = tuple[bytes, bytes]

HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)
SERVER_NAME = "strangler"  # `Server` on answers that have none, as nginx and Envoy name themselves
_SERVER = SERVER_NAME.encode()

# How the body after a head is framed.
EMPTY = "empty"  # no body at all (HEAD, 204, 304)
LENGTH = "length"  # exactly Content-Length bytes
CHUNKED = "chunked"  # chunked transfer coding (HTTP/1.1 only)
UNTIL_CLOSE = "close"  # the body ends when the connection does (HTTP/1.0)


class ResponseHead(NamedTuple):
    # A named tuple rather than a frozen dataclass: as immutable, and made for a sixth of
    # the cost (a frozen dataclass sets each field through `object.__setattr__`).
    data: bytes
    framing: str
    keep_alive: bool


def must_be_empty(method: str, status: int) -> bool:
    """RFC 9110 §6.4.1: no body in a response to HEAD, or with status 1xx, 204 or 304."""
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def connection_listed(raw_headers: Sequence[RawHeader]) -> frozenset[bytes]:
    """Lower-case names listed in `Connection` headers (hop-by-hop by declaration)."""
    names: set[bytes] = set()
    for name, value in raw_headers:
        if len(name) == 10 and name.lower() == b"connection":
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    names.add(token)
    return frozenset(names)


# What each header name means to `response_head`; any other name is passed on as it is.
_DROP, _ID, _LENGTH, _DATE, _SERVER_NAME, _CONNECTION, _PASS = range(7)  # _PASS: any other
_ROLE = {name: _DROP for name in HOP_BY_HOP_BYTES} | {
    b"x-request-id": _ID,
    b"content-length": _LENGTH,
    b"date": _DATE,
    b"server": _SERVER_NAME,
    b"connection": _CONNECTION,
}
# `Connection` values that name no other header (nearly every response carries one).
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"upgrade"})
# Roles by the name as sent, for the names most responses carry (in the spellings servers
# use): `_ROLE` of the lower-cased name, without lower-casing it. Names not here are
# lower-cased and looked up in `_ROLE`.
_COMMON = (
    b"Content-Type",
    b"Content-Length",
    b"Content-Encoding",
    b"Content-Language",
    b"Content-Disposition",
    b"Content-Security-Policy",
    b"Date",
    b"Server",
    b"Connection",
    b"Keep-Alive",
    b"Transfer-Encoding",
    b"X-Request-ID",
    b"X-Request-Id",
    b"ETag",
    b"Etag",
    b"Last-Modified",
    b"Accept-Ranges",
    b"Cache-Control",
    b"Expires",
    b"Pragma",
    b"Vary",
    b"Set-Cookie",
    b"Location",
    b"Allow",
    b"Age",
    b"Access-Control-Allow-Origin",
    b"Access-Control-Allow-Credentials",
    b"Strict-Transport-Security",
    b"Referrer-Policy",
    b"Cross-Origin-Opener-Policy",
    b"X-Frame-Options",
    b"X-Content-Type-Options",
)
_ROLE_AS_SENT = {
    spelling: _ROLE.get(spelling.lower(), _PASS)
    for name in _COMMON
    for spelling in (name, name.lower())
}
_STATUS_LINES: dict[tuple[int, str], bytes] = {}  # status lines by their parts
# Common names as sent that say nothing about framing (neither Content-Length nor
# Transfer-Encoding) and end in no whitespace: `proxy.forward.whole_body` passes them by
# with one lookup (whose hash of the name `response_head` then reuses).
PLAIN_NAMES = frozenset(
    n for n in _ROLE_AS_SENT if n.lower() not in (b"content-length", b"transfer-encoding")
)
assert not any(n[-1:].isspace() for n in PLAIN_NAMES)


def response_head(
    version: tuple[int, int],
    method: str,
    status: int,
    reason: str,
    raw_headers: Sequence[RawHeader],
    request_id: bytes | None,
    *,
    keep_alive: bool,
    date: bytes,
    listed: frozenset[bytes] | None = None,
) -> ResponseHead:
    """The head to send the client for an upstream response, and how its body is framed.

    `keep_alive` is what the client asked for; the result says whether the connection can
    actually stay open after this response (not after a close-delimited body). `listed`:
    the names `Connection` lists, when already known.
    """
    empty = method == "HEAD" or status in (204, 304) or 100 <= status < 200  # must_be_empty
    key = (status, reason)
    status_line = _STATUS_LINES.get(key)
    if status_line is None:
        status_line = b"HTTP/1.1 %d %s\r\n" % (
            status,
            reason.encode("utf-8", "surrogateescape"),
        )
        if len(reason) <= 64:  # (a reason can be as long as a header line)
            if len(_STATUS_LINES) >= 1024:
                _STATUS_LINES.clear()
            _STATUS_LINES[key] = status_line
    out: list[bytes] = [status_line]
    has_id = has_date = has_server = False
    length: bytes | None = None
    role_as_sent = _ROLE_AS_SENT.get
    role_of = _ROLE.get
    extend = out.extend  # name, ": ", value, CR LF as four parts: fewer objects than concatenating
    for name, value in raw_headers:
        role = role_as_sent(name)
        if role is None:
            role = role_of(name.lower(), _PASS)
        if listed is not None and name.lower() in listed:
            continue
        if role != _PASS:
            if role == _DROP:
                continue
            if role == _CONNECTION:
                if listed is None and value.lower() not in _PLAIN_CONNECTION:
                    # It names other headers to drop, maybe ones already passed: start over
                    # knowing them all (rare).
                    return response_head(
                        version,
                        method,
                        status,
                        reason,
                        raw_headers,
                        request_id,
                        keep_alive=keep_alive,
                        date=date,
                        listed=connection_listed(raw_headers),
                    )
                continue
            if role == _ID:
                if request_id is not None:
                    if not has_id:
                        has_id = True
                        out.append(b"X-Request-ID: " + request_id + b"\r\n")
                    continue
            elif role == _LENGTH:
                if status in (204, 304) or status < 200 or length is not None:
                    continue  # RFC 9110 §8.6: never with 204, 304 or 1xx
                length = value.strip()
            elif role == _DATE:
                has_date = True
            else:
                has_server = True
        extend((name, b": ", value, b"\r\n"))
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
    else:  # (an HTTP/1.0 client reads a 1.1 answer as persistent unless it says otherwise)
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return ResponseHead(b"".join(out), framing, keep_alive)


def serialize(
    version: tuple[int, int],
    method: str,
    status: int,
    reason: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    keep_alive: bool,
    date: bytes,
) -> tuple[bytes, bool]:
    """A whole response of the proxy's own (an error page) as bytes, and keep-alive.

    `headers` are the response's own; `Content-Length` is set from `body`.
    """
    raw = [
        (k.encode("latin-1"), v.encode("utf-8"))
        for k, v in headers
        if k.lower() != "content-length"
    ]
    empty = must_be_empty(method, status)
    if not empty or (method == "HEAD" and body):  # as aiohttp: a HEAD answer says its size
        raw.append((b"Content-Length", b"%d" % len(body)))
    head = response_head(
        version, method, status, reason, raw, None, keep_alive=keep_alive, date=date
    )
    return head.data + (b"" if empty else body), head.keep_alive
