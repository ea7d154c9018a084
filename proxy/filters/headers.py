"""Header hygiene for an intermediary (RFC 9110 §7.6, RFC 7239). Pure.

Order matters: hop-by-hop headers (the fixed set *and* every name listed in `Connection`)
are dropped first, and only then does the proxy add its own `X-Forwarded-*`, `Forwarded`
and `Via`. Otherwise a client could send `Connection: X-Forwarded-For` and make the proxy
strip what it just added.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "http2-settings",
    }
)
FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
# Other claims about the client or the edge that frameworks and CDNs read (Django's and
# Werkzeug's proxy fixes, Spring's ForwardedHeaderFilter, nginx's realip module): kept only
# from a trusted peer, like the X-Forwarded-* family; from anyone else they would be lies.
CLIENT_CLAIMS = frozenset(
    {
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "client-ip",
        "x-proxyuser-ip",
        "x-original-host",
        "x-host",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-original-forwarded-for",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "x-url-scheme",
        "front-end-https",
    }
)
# Headers that make an upstream serve another path or method than the request line's
# (IIS URL Rewrite, Symfony and Zend read X-Original-URL; Symfony, Spring, Express and Google
# APIs honour method overrides): the proxy routed by the request line, so these would let a
# client reach a path or method a route took away from that upstream.
REQUEST_OVERRIDES = frozenset(
    {
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)
_DROPPED_FROM_TRUSTED = HOP_BY_HOP | REQUEST_OVERRIDES
# Never passed on from a client, trusted or not: the proxy answers `Expect` itself, sets its
# own `X-Request-ID`, and marks its shadow copies.
CLIENT_DROPPED = frozenset({"expect", "x-request-id", "x-strangler-shadow"})
_DROPPED_FROM_CLIENTS = _DROPPED_FROM_TRUSTED | CLIENT_CLAIMS
VIA_VALUE = "1.1 strangler"
_random_bits = random.Random().getrandbits  # seeded once from os.urandom
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,200}")

Header = tuple[str, str]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def connection_tokens(headers: Iterable[Header]) -> frozenset[str]:
    """Lower-case names listed in every `Connection` header."""
    names: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            names.update(t.strip().lower() for t in value.split(",") if t.strip())
    return frozenset(names)


def says_close(headers: Any) -> bool:
    """Whether a request's `Connection` (or `Proxy-Connection`) lists `close`; `headers`: a
    multidict. llhttp keeps an HTTP/1.0 connection whose request lists `keep-alive`, even
    when it lists `close` too (`keep-alive, close`, or two fields), while `close` wins (RFC
    9112 §9.3: a connection persists only without it), as nginx reads it. llhttp counts
    `Proxy-Connection` as `Connection`, so its `close` counts here too."""
    for name in ("Connection", "Proxy-Connection"):
        for value in headers.getall(name, ()):
            if "close" in value.lower() and any(
                t.strip().lower() == "close" for t in value.split(",")
            ):
                return True
    return False


def parse_trusted(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Addresses already parsed, by their text: `ipaddress.ip_address` costs several microseconds
# (ten for IPv6), and a proxy behind balancers parses the peer and each X-Forwarded-For hop
# it walks on every request, the same few balancer and client addresses over and over (the
# walk took a tenth of an express request's CPU). Bounded: cleared when full; texts longer
# than any address with brackets, a port and a short zone are parsed but not kept.
_PARSED: dict[str, tuple[str, IPAddress] | None] = {}
_PARSED_MAX = 4096
_PARSED_TEXT_MAX = 64
# X-Forwarded-For elements read at most: a chain of balancers is a handful, and a client inside
# a listed network writes as many as 64 KiB of headers hold (some 5,000 distinct addresses:
# 70 ms of parsing per request); then the walk stops at the last listed hop it read.
MAX_TRUSTED_HOPS = 16


def _parsed(text: str) -> tuple[str, IPAddress] | None:
    """A peer or `X-Forwarded-For` element as (canonical text, address), None when it is no
    address: a port is dropped (`203.0.113.9:5555`, `[2001:db8::1]:443`, as Azure's gateways
    and some CDNs write them), and an IPv4-mapped IPv6 address is written as IPv4."""
    hit = _PARSED.get(text, False)
    if hit is not False:
        return hit
    entry = text.strip()
    if entry.startswith("["):  # [v6] or [v6]:port
        entry = entry[1 : entry.find("]")] if "]" in entry else ""
    elif entry.count(":") == 1:  # v4:port (a bare v6 address has two colons or more)
        entry = entry.partition(":")[0]
    try:
        addr: IPAddress = ipaddress.ip_address(entry)
    except ValueError:
        found = None
    else:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        found = (str(addr), addr)
    if len(text) <= _PARSED_TEXT_MAX:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = found
    return found


def _in(addr: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(addr in net for net in trusted)


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    if not trusted or not peer:
        return False
    found = _parsed(peer)
    return found is not None and _in(found[1], trusted)


def _hop_address(entry: str) -> str | None:
    """One `X-Forwarded-For` element as a canonical address, or None when it is none (see
    `_parsed`)."""
    found = _parsed(entry)
    return None if found is None else found[0]


def client_address(xff_lines: Sequence[str], peer: str, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, or when the peer is a trusted proxy, the nearest
    `X-Forwarded-For` hop that is not one (walked from the right, as nginx's
    `real_ip_recursive`, Envoy's `xff_trusted_cidrs` and Traefik's `trustedIPs` do). Behind
    two listed balancers the last element is the outer balancer's address, and every
    client would share it: one rate-limit budget, one sticky side, one refusal budget.

    Each hop is read as an address (its port dropped), so one client keeps one key
    whatever port its connection had; an element that is no address stops the walk at the
    trusted hop that wrote it (nginx's rule), never becoming a key of its own, and so does
    reading `MAX_TRUSTED_HOPS` elements, all listed."""
    if not is_trusted(peer, trusted):
        return peer
    client = peer
    walked = 0
    for line in reversed(xff_lines):
        for entry in reversed(line.split(",")):
            if not entry or entry.isspace():
                continue
            if walked == MAX_TRUSTED_HOPS:
                return client
            walked += 1
            found = _parsed(entry)
            if found is None:
                return client
            client = found[0]
            if not _in(found[1], trusted):
                return client
    return client


def _forwarded_node(ip: str) -> str:
    if ":" in ip:
        return f'"[{ip}]"'
    return ip or "unknown"


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _quote(value: str) -> str:
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FRAMING = frozenset({"content-length"})


def peer_address(peername: object) -> str:
    """The client's address from a socket's `peername`, an IPv4 client on a dual-stack
    (`::`) listener as plain IPv4 (`::ffff:10.0.0.1` is `10.0.0.1`), so `trusted_proxies`
    and the forwarding headers see the address as it is written everywhere else."""
    if not isinstance(peername, tuple) or not peername:
        return ""
    address = str(peername[0])
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


# What a WebSocket upgrade forwards although hop-by-hop (`forward_headers(keep=...)`): a
# route may match `Upgrade: websocket`.
UPGRADE_HEADERS = frozenset({"upgrade", "connection"})
# Never forwarded from any client: a route condition on one can never hold.
NEVER_FORWARDED = (HOP_BY_HOP - UPGRADE_HEADERS) | REQUEST_OVERRIDES | CLIENT_DROPPED


def routing_view(
    headers: Sequence[Header], names: frozenset[str], *, trusted: bool
) -> dict[str, str]:
    """The values of `names` (lower-case) that route `headers` conditions may see: only what
    the upstream will receive. A header sent twice (which value would the upstream read?),
    one `Connection` lists, and one the proxy drops or replaces for this client (forwarding
    headers and client-address claims from an untrusted peer, method and URL overrides)
    counts as absent: a route chosen on a value the upstream never sees is a route a
    client picks for itself."""
    listed: set[str] = set()
    seen: dict[str, str | None] = {}
    for name, value in headers:
        lname = name.lower()
        if lname == "connection":
            listed.update(t.strip().lower() for t in value.split(","))
        if lname in names and "_" not in name:
            seen[lname] = None if lname in seen else value
    dropped = _DROPPED_FROM_TRUSTED if trusted else _DROPPED_FROM_CLIENTS | FORWARDING
    return {
        n: v
        for n, v in seen.items()
        if v is not None
        and (n in UPGRADE_HEADERS or (n not in listed and n not in dropped))
        and n not in CLIENT_DROPPED
    }


# `forward_headers`' names dropped before any `Connection` lists more, by (trusted, drop,
# keep): the same few sets on every request (`drop` is the runtime's), where building the
# union of some thirty names anew cost about a sixth of the function.
_DROPPED: dict[tuple[bool, frozenset[str], frozenset[str]], frozenset[str]] = {}


def _dropped(trusted: bool, drop: frozenset[str], keep: frozenset[str]) -> frozenset[str]:
    dropped = _DROPPED_FROM_TRUSTED if trusted else _DROPPED_FROM_CLIENTS
    if keep:
        dropped = dropped - keep
    if drop:
        dropped = dropped | drop
    if len(_DROPPED) >= 64:  # a reload makes a new `drop`: bounded whatever the reloads
        _DROPPED.clear()
    _DROPPED[(trusted, drop, keep)] = dropped
    return dropped


def forward_headers(
    headers: Sequence[Header],
    *,
    peer: str,
    scheme: str,
    host: str,
    trusted: bool,
    request_id: str,
    content_length: int | None = None,
    drop: frozenset[str] = frozenset(),
    keep: frozenset[str] = frozenset(),
    max_forwards: int | None = None,
) -> list[Header]:
    """The client's headers as they go upstream, in one pass (order and repeats kept):

    * names with an underscore dropped (as nginx and gunicorn do): CGI/WSGI servers, Django
      behind gunicorn included, map `X_Forwarded_For` and `X-Forwarded-For` to the same
      variable, so an underscore twin would slip past the rules below;
    * hop-by-hop headers dropped, the fixed set and every name `Connection` lists, and the
      names in `drop`; `keep` lets an upgrade (WebSocket) keep `Upgrade`/`Connection`;
    * `Content-Length` in canonical form (`05` becomes `5`): the upstream must read the
      length the proxy's parser read, whatever its own parser makes of odd digits;
    * incoming `X-Forwarded-*`/`Forwarded` replaced by ours, or from a `trusted` peer kept
      and extended, so a client cannot claim another address, scheme or host (of repeated
      `X-Forwarded-Proto`/`-Host` values the last, the nearest proxy's, counts);
    * `X-Real-IP`, `True-Client-IP` and the other `CLIENT_CLAIMS` kept from a `trusted` peer
      only, and `REQUEST_OVERRIDES` (`X-Original-URL`, `X-HTTP-Method-Override`, ...) never:
      routing and the upstream must agree on the path and the method;
    * `Via` extended at its end (RFC 9110 §7.6.3) or added, and `X-Request-ID` last;
    * `Max-Forwards` one lower when `max_forwards` is given (OPTIONS, RFC 9110 §7.6.2).

    `Content-Length` is kept even when `Connection` lists it: framing is the proxy's to
    redo, and a body sent chunked instead would reach a WSGI app (Django) empty.

    Hop-by-hop names are dropped before the proxy adds its own headers, so `Connection:
    X-Forwarded-For` cannot make the proxy strip what it adds.
    """
    dropped = _DROPPED.get((trusted, drop, keep))
    if dropped is None:
        dropped = _dropped(trusted, drop, keep)
    for name, value in headers:
        if len(name) == 10 and name.lower() == "connection":
            dropped = dropped | (
                frozenset(t.strip().lower() for t in value.split(",") if t.strip())
                - keep
                - _FRAMING
            )
    out: list[Header] = []
    xff: list[str] = []
    fwd: list[str] = []
    xfp = xfh = None
    via = -1
    for name, value in headers:
        if "_" in name:
            continue
        lname = name.lower()
        if lname in dropped:
            continue
        if lname in FORWARDING:
            if trusted:
                if lname == "x-forwarded-for":
                    xff.append(value)
                elif lname == "forwarded":
                    fwd.append(value)
                elif lname == "x-forwarded-proto":
                    xfp = value.rsplit(",", 1)[-1].strip()
                elif lname == "x-forwarded-host":
                    xfh = value.rsplit(",", 1)[-1].strip()
            continue
        if lname == "content-length" and content_length is not None:
            value = str(content_length)
        elif lname == "via":
            via = len(out)  # the last one: our entry goes at the end of the list
        elif max_forwards is not None and lname == "max-forwards":
            value = str(max_forwards - 1)
        out.append((name, value))
    xff.append(peer or "unknown")
    out.append(("X-Forwarded-For", ", ".join(xff)))
    out.append(("X-Forwarded-Proto", xfp or scheme))
    if xfh or host:
        out.append(("X-Forwarded-Host", xfh or host))
    element = f"for={_forwarded_node(peer)};proto={scheme}"
    if host:
        element += f";host={_quote(host)}"
    fwd.append(element)
    out.append(("Forwarded", ", ".join(fwd)))
    if via < 0:
        out.append(("Via", VIA_VALUE))
    else:
        out[via] = (out[via][0], f"{out[via][1]}, {VIA_VALUE}")
    out.append(("X-Request-ID", request_id))
    return out


def request_id(incoming: str | None) -> str:
    """Keep a client's request id when it is a sane token; otherwise make one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    # 128 random bits from the process's PRNG: unique enough to correlate logs, and free of
    # the getrandom() system call uuid4 makes on every request.
    return f"{_random_bits(128):032x}"


# -- request hygiene at the edge (RFC 9110 §5, §7.2, §10.1.1; RFC 9112 §6.1) ----------------------

# An RFC 3986 host (a reg-name, IPv4 or a bracketed IPv6 literal) and an optional port: no
# userinfo, no path, no whitespace. Sub-delimiters (`,;=!$&'()*+`) are legal in a reg-name
# but in no real host name; refusing them keeps `Host: a, b` from meaning two hosts.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%]+)(?::([0-9]{1,5}))?")


def valid_host(value: str) -> bool:
    """True when `value` is a usable Host: `name`, `name:port`, `1.2.3.4`, `[::1]:8080`.

    Empty values, userinfo (`user@host`), paths (`host/x`), spaces and ports above 65535
    are refused: the proxy routes on Host and forwards it, so it must mean one thing.
    """
    m = _HOST.fullmatch(value)
    if m is None:
        return False
    return m.group(1) is None or int(m.group(1)) <= 65535


def framing_problem(version: tuple[int, int], headers: Sequence[Header]) -> tuple[int, str] | None:
    """Why the request's framing cannot be trusted, as (status, reason); None if it can.

    The listener's parser already rejects CL+TE, differing lengths and codings that do not
    end in `chunked`; these are the cases it lets through, all answered with the connection
    closed. RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as
    having faulty framing (400). An empty Transfer-Encoding is a coding list with no coding
    (400): parsers disagree about where such a body ends. A coding other than `chunked`
    (`gzip, chunked`) is one the proxy cannot decode or pass on, since Transfer-Encoding is
    hop-by-hop: forwarding the bytes without it would hand the upstream a different body
    (501, as RFC 9112 §6.1 says).
    """
    for name, value in headers:
        if name.lower() != "transfer-encoding":
            continue
        if version < (1, 1):
            return 400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1): faulty framing"
        codings = [c.strip().lower() for c in value.split(",") if c.strip()]
        if not codings:
            return 400, "empty Transfer-Encoding header: no coding to frame the body with"
        unknown = [c for c in codings if c != "chunked"]
        if unknown:
            return 501, f"transfer coding {unknown[0]!r} is not supported; send the body chunked"
    return None


def expectation(version: tuple[int, int], headers: Sequence[Header]) -> str | None:
    """What to do about `Expect` (RFC 9110 §10.1.1): "continue", "reject" (417) or None.

    "continue" means send `100 Continue` before reading the body; never to an HTTP/1.0
    client, which cannot parse 1xx responses (RFC 9110 §15.2). Any other expectation is
    one the proxy cannot meet: 417.
    """
    values = [v.strip().lower() for n, v in headers if n.lower() == "expect"]
    if not values:
        return None
    if any(v != "100-continue" for v in values):
        return "reject"
    return "continue" if version >= (1, 1) else None


def rewrite_response_headers(
    raw: Sequence[tuple[bytes, bytes]], changes: Sequence[tuple[str, str | None]]
) -> list[tuple[bytes, bytes]]:
    """An upstream answer's header fields with a route's `response_headers` applied: each
    named field replaced by the given value, or removed for None (pure)."""
    names = {name.lower().encode("latin-1") for name, _ in changes}
    out = []
    for k, v in raw:
        lowered = k.lower()
        if lowered in names:
            continue
        if lowered == b"connection":  # it may list a field the route sets: not any more
            tokens = [t for t in v.split(b",") if t.strip().lower() not in names]
            if not tokens:
                continue
            v = b",".join(tokens)
        out.append((k, v))
    out += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in changes if v is not None]
    return out
