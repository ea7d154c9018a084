"""Hop-by-hop stripping and forwarding headers, on plain data."""

from __future__ import annotations

import pytest

from proxy.filters.headers import (
    client_address,
    forward_headers,
    is_trusted,
    parse_trusted,
    peer_address,
    request_id,
    routing_view,
)


def forwarded(headers, *, peer="10.0.0.5", host="shop", trusted=False, **kw):
    """What goes upstream, without the headers the proxy adds (for order checks)."""
    return forward_headers(
        headers, peer=peer, scheme="http", host=host, trusted=trusted, request_id="rid", **kw
    )


OURS = {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Via"}


def test_strips_fixed_set_and_connection_listed_names_keeping_order_and_repeats():
    headers = [
        ("Host", "h"),
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "s"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "x"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert [h for h in forwarded(headers) if h[0] not in OURS] == [
        ("Host", "h"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Request-ID", "rid"),
    ]


def test_an_upgrade_keeps_upgrade_and_connection():
    headers = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Keep-Alive", "1")]
    keep = frozenset({"upgrade", "connection"})
    assert [h for h in forwarded(headers, keep=keep) if h[0] not in OURS] == [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("X-Request-ID", "rid"),
    ]


def test_names_in_drop_are_dropped_and_the_request_id_is_ours():
    headers = [("Expect", "100-continue"), ("X-Request-ID", "client"), ("A", "1")]
    out = forwarded(headers, drop=frozenset({"expect", "x-request-id"}))
    assert [h for h in out if h[0] not in OURS] == [("A", "1"), ("X-Request-ID", "rid")]


def test_connection_cannot_strip_what_the_proxy_adds():
    incoming = [("Host", "shop"), ("Connection", "X-Forwarded-For, Forwarded")]
    out = forwarded(incoming)
    assert ("X-Forwarded-For", "10.0.0.5") in out
    assert all(name != "Connection" for name, _ in out)


def test_untrusted_client_cannot_spoof_forwarding_headers():
    incoming = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil"),
        ("Forwarded", "for=1.2.3.4"),
    ]
    out = dict(forwarded(incoming, peer="127.0.0.1", host="shop:8080"))
    assert out["X-Forwarded-For"] == "127.0.0.1"
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "shop:8080"
    assert out["Forwarded"] == 'for=127.0.0.1;proto=http;host="shop:8080"'


def test_trusted_proxy_chain_is_extended():
    incoming = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=203.0.113.9;proto=https"),
    ]
    out = dict(forwarded(incoming, peer="10.1.2.3", trusted=True))
    assert out["X-Forwarded-For"] == "203.0.113.9, 10.1.2.3"
    assert out["X-Forwarded-Proto"] == "https"
    assert out["Forwarded"] == "for=203.0.113.9;proto=https, for=10.1.2.3;proto=http;host=shop"


def test_ipv6_forwarded_node_is_quoted_in_brackets():
    out = dict(forwarded([], peer="::1", host="h"))
    assert out["Forwarded"].startswith('for="[::1]"')


def test_trusted_cidrs():
    nets = parse_trusted(["10.0.0.0/8", "::1/128"])
    assert is_trusted("10.9.8.7", nets)
    assert is_trusted("::1", nets)
    assert not is_trusted("192.168.1.1", nets)
    assert not is_trusted("garbage", nets)
    assert not is_trusted("10.0.0.1", ())


def test_via_is_extended_at_its_end_or_appended():
    """RFC 9110 §7.6.3: each proxy appends its entry; field lines combine in order, so it
    goes after the last one."""
    out = forwarded([("Via", "1.0 fred"), ("A", "1"), ("Via", "1.0 bob")])
    assert out[:3] == [("Via", "1.0 fred"), ("A", "1"), ("Via", "1.0 bob, 1.1 strangler")]
    assert forwarded([])[-2:] == [("Via", "1.1 strangler"), ("X-Request-ID", "rid")]
    # A Via the client lists in Connection is hop-by-hop: dropped, and ours added anew.
    out = forwarded([("Connection", "via"), ("Via", "1.0 fred")])
    assert [h for h in out if h[0] == "Via"] == [("Via", "1.1 strangler")]


def test_request_id_kept_when_sane_else_generated():
    assert request_id("abc-123") == "abc-123"
    generated = request_id("bad id with spaces\r\n")
    assert generated != "bad id with spaces\r\n" and len(generated) == 32
    assert len(request_id(None)) == 32
    assert len(request_id("x" * 500)) == 32


def test_of_repeated_forwarded_proto_and_host_from_a_trusted_peer_the_last_counts():
    """Lines combine in order (RFC 9110 §5.3): the last value is the nearest proxy's; the
    first may be the client's own claim that a load balancer appended to."""
    out = dict(
        forward_headers(
            [
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "client.example, lb.example"),
            ],
            peer="10.0.0.1",
            scheme="http",
            host="h",
            trusted=True,
            request_id="rid",
        )
    )
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "lb.example"


def test_content_length_listed_in_connection_is_kept():
    """Framing is the proxy's to redo: without it a known-length body would go chunked and
    reach a WSGI app empty."""
    out = forwarded(
        [("Connection", "Content-Length, X-Drop"), ("Content-Length", "05"), ("X-Drop", "1")],
        content_length=5,
    )
    assert ("Content-Length", "5") in out
    assert all(name != "X-Drop" for name, _ in out)


def test_an_ipv4_client_on_a_dual_stack_listener_is_plain_ipv4():
    assert peer_address(("::ffff:10.1.2.3", 5000, 0, 0)) == "10.1.2.3"
    assert peer_address(("::ffff:abcd", 5000, 0, 0)) == "::ffff:abcd"  # not IPv4-mapped
    assert peer_address(("2001:db8::1", 5000, 0, 0)) == "2001:db8::1"
    assert peer_address(("127.0.0.1", 5000)) == "127.0.0.1"
    assert peer_address(None) == ""


def test_the_client_address_from_a_trusted_peer_is_the_last_element_of_the_last_line():
    lines = ["1.1.1.1, 2.2.2.2", "3.3.3.3"]
    nets = parse_trusted(["10.0.0.1"])
    assert client_address(lines, "10.0.0.1", nets) == "3.3.3.3"
    assert client_address(lines, "10.0.0.2", nets) == "10.0.0.2"


CLAIMS = [
    ("X-Real-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Ssl", "on"),
]
OVERRIDES = [
    ("X-Original-URL", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Method-Override", "DELETE"),
]


def test_client_claims_reach_the_upstream_only_from_a_trusted_peer():
    headers = [("Host", "h"), *CLAIMS, *OVERRIDES, ("Accept", "*/*")]
    assert [h for h in forwarded(headers) if h[0] not in OURS] == [
        ("Host", "h"),
        ("Accept", "*/*"),
        ("X-Request-ID", "rid"),
    ]
    kept = [h for h in forwarded(headers, trusted=True) if h[0] not in OURS]
    assert kept == [("Host", "h"), *CLAIMS, ("Accept", "*/*"), ("X-Request-ID", "rid")]


def test_route_response_headers_replace_remove_and_survive_connection():
    from proxy.filters.headers import rewrite_response_headers

    raw = [
        (b"Content-Type", b"application/json"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"X-Frame-Options", b"ALLOW-FROM x"),
        (b"X-Powered-By", b"PHP/5"),
        (b"Connection", b"keep-alive, X-Frame-Options"),
    ]
    out = rewrite_response_headers(raw, (("X-Frame-Options", "DENY"), ("X-Powered-By", None)))
    assert out == [
        (b"Content-Type", b"application/json"),
        (b"Connection", b"keep-alive"),  # it no longer lists the route's field
        (b"X-Frame-Options", b"DENY"),
    ]
    only = rewrite_response_headers(
        [(b"Connection", b"X-Frame-Options")], (("X-Frame-Options", "DENY"),)
    )
    assert only == [(b"X-Frame-Options", b"DENY")]


def test_routing_sees_only_header_values_the_upstream_will_receive():
    names = frozenset({"x-beta", "x-forwarded-proto", "x-real-ip", "x-http-method-override"})
    plain = [("X-Beta", "1"), ("X-Forwarded-Proto", "https"), ("X-Real-IP", "10.0.0.1")]
    assert routing_view(plain, names, trusted=False) == {"x-beta": "1"}
    assert routing_view(plain, names, trusted=True) == {
        "x-beta": "1",
        "x-forwarded-proto": "https",
        "x-real-ip": "10.0.0.1",
    }
    # Listed in Connection (dropped before forwarding), sent twice, an underscore twin, an
    # override the proxy never forwards: none of them routes.
    assert (
        routing_view([("X-Beta", "1"), ("Connection", "close, X-Beta")], names, trusted=True) == {}
    )
    assert routing_view([("X-Beta", "1"), ("x-beta", "0")], names, trusted=True) == {}
    assert routing_view([("X_Beta", "1")], names, trusted=True) == {}
    assert routing_view([("X-HTTP-Method-Override", "DELETE")], names, trusted=True) == {}
    assert routing_view([("X-Other", "1")], names, trusted=True) == {}


def test_routing_sees_an_upgrades_own_hop_by_hop_headers():
    names = frozenset({"upgrade", "connection", "keep-alive", "te"})
    handshake = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Keep-Alive", "5")]
    assert routing_view(handshake, names, trusted=False) == {
        "upgrade": "websocket",
        "connection": "Upgrade",
    }


def test_the_client_is_the_nearest_hop_no_trusted_proxy_wrote():
    """Walked from the right past every listed balancer (nginx's `real_ip_recursive`):
    behind two of them the last hop is the outer balancer, which every client shares."""
    nets = parse_trusted(["10.0.0.0/8"])
    assert client_address(["203.0.113.7, 10.0.0.5"], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address(["198.51.100.1, 203.0.113.7"], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address(["203.0.113.7", "10.0.0.5"], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address(["10.0.0.4, 10.0.0.5"], "10.0.0.9", nets) == "10.0.0.4"
    assert client_address(["203.0.113.7, "], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address([], "10.0.0.9", nets) == "10.0.0.9"
    # an untrusted peer's header means nothing
    assert client_address(["203.0.113.7"], "192.0.2.1", nets) == "192.0.2.1"


def test_a_hop_is_an_address_without_its_port_or_it_ends_the_walk():
    """`ip:port` (Azure's gateways) must not make each connection a new client; a hop that
    is no address stops at the trusted hop that wrote it, and never becomes a key."""
    nets = parse_trusted(["10.0.0.0/8"])
    assert client_address(["203.0.113.7:5555"], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address(["[2001:DB8::1]:443"], "10.0.0.9", nets) == "2001:db8::1"
    assert client_address(["2001:db8::1"], "10.0.0.9", nets) == "2001:db8::1"
    assert client_address(["::ffff:203.0.113.7"], "10.0.0.9", nets) == "203.0.113.7"
    assert client_address(["not-an-ip"], "10.0.0.9", nets) == "10.0.0.9"
    assert client_address(["203.0.113.7, junk, 10.0.0.5"], "10.0.0.9", nets) == "10.0.0.5"


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """What `ipaddress.ip_address` parses from here on, with an empty table of addresses
    parsed before (other tests fill it)."""
    from proxy.filters import headers as module

    real = module.ipaddress.ip_address
    parsed: list[str] = []

    def counting(text):
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(module.ipaddress, "ip_address", counting)
    monkeypatch.setattr(module, "_PARSED", {})
    return parsed


def test_an_address_seen_before_is_not_parsed_again(parses):
    """Behind balancers every request walks the peer and its X-Forwarded-For hops; parsing
    each with `ipaddress` again cost a tenth of an express request's CPU (bench/
    express_profile.py with trusted_proxies and one hop), for the same few addresses."""
    nets = parse_trusted(["10.0.0.0/8"])
    for _ in range(3):
        hops = ["198.51.100.77, 10.31.0.5:80"]
        assert client_address(hops, "10.31.0.9", nets) == "198.51.100.77"
        assert is_trusted("10.31.0.9", nets)
    assert sorted(parses) == ["10.31.0.5", "10.31.0.9", "198.51.100.77"]


def test_the_parsed_addresses_kept_are_bounded(monkeypatch):
    """Clients vary what is walked (an IPv6 client has a /64 of addresses): the table of
    parsed addresses stays bounded, and a long element (never an address) is not kept."""
    from proxy.filters import headers as module

    monkeypatch.setattr(module, "_PARSED_MAX", 50)
    monkeypatch.setattr(module, "_PARSED", {})
    nets = parse_trusted(["10.0.0.0/8"])
    for i in range(500):
        client_address([f"2001:db8::{i:x}"], "10.0.0.9", nets)
        assert len(module._PARSED) <= 50
    junk = "x" * 5000
    assert client_address([f"{junk}, 10.0.0.5"], "10.0.0.9", nets) == "10.0.0.5"
    assert junk not in module._PARSED


def test_the_walk_past_listed_hops_is_bounded(parses):
    """A client inside a listed network writes its own hops, as many as 64 KiB of headers
    hold (some 5,000): walking them all parsed for 70 ms per request. A real chain of
    balancers is a handful; past `MAX_TRUSTED_HOPS` the walk stops at the last one reached."""
    from proxy.filters import headers as module

    nets = parse_trusted(["10.0.0.0/8"])
    hops = [f"10.7.{i // 250}.{i % 250}" for i in range(5000)]
    client = client_address(["203.0.113.5, " + ", ".join(hops)], "10.0.0.9", nets)
    assert client == hops[-module.MAX_TRUSTED_HOPS]
    assert len(parses) <= module.MAX_TRUSTED_HOPS + 1
    # a chain within the bound is walked to its client
    chain = ", ".join(hops[: module.MAX_TRUSTED_HOPS - 1])
    assert client_address([f"203.0.113.5, {chain}"], "10.0.0.9", nets) == "203.0.113.5"
