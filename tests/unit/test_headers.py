"""Hop-by-hop stripping and forwarding headers, on plain data."""

from __future__ import annotations

from proxy.filters.headers import (
    append_via,
    forwarding_headers,
    is_trusted,
    parse_trusted,
    request_id,
    strip_hop_by_hop,
)


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
    assert strip_hop_by_hop(headers) == [
        ("Host", "h"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_connection_cannot_strip_what_the_proxy_adds():
    incoming = [("Host", "shop"), ("Connection", "X-Forwarded-For, Forwarded")]
    out = forwarding_headers(
        strip_hop_by_hop(incoming), peer="10.0.0.5", scheme="http", host="shop", trusted=False
    )
    assert ("X-Forwarded-For", "10.0.0.5") in out
    assert all(name != "Connection" for name, _ in out)


def test_untrusted_client_cannot_spoof_forwarding_headers():
    incoming = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil"),
        ("Forwarded", "for=1.2.3.4"),
    ]
    out = dict(
        forwarding_headers(
            incoming, peer="127.0.0.1", scheme="http", host="shop:8080", trusted=False
        )
    )
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
    out = dict(
        forwarding_headers(incoming, peer="10.1.2.3", scheme="http", host="shop", trusted=True)
    )
    assert out["X-Forwarded-For"] == "203.0.113.9, 10.1.2.3"
    assert out["X-Forwarded-Proto"] == "https"
    assert out["Forwarded"] == "for=203.0.113.9;proto=https, for=10.1.2.3;proto=http;host=shop"


def test_ipv6_forwarded_node_is_quoted_in_brackets():
    out = dict(forwarding_headers([], peer="::1", scheme="http", host="h", trusted=False))
    assert out["Forwarded"].startswith('for="[::1]"')


def test_trusted_cidrs():
    nets = parse_trusted(["10.0.0.0/8", "::1/128"])
    assert is_trusted("10.9.8.7", nets)
    assert is_trusted("::1", nets)
    assert not is_trusted("192.168.1.1", nets)
    assert not is_trusted("garbage", nets)
    assert not is_trusted("10.0.0.1", ())


def test_via_is_appended():
    h = [("Via", "1.0 fred")]
    append_via(h)
    assert h == [("Via", "1.0 fred, 1.1 strangler")]
    h2: list[tuple[str, str]] = []
    append_via(h2)
    assert h2 == [("Via", "1.1 strangler")]


def test_request_id_kept_when_sane_else_generated():
    assert request_id("abc-123") == "abc-123"
    generated = request_id("bad id with spaces\r\n")
    assert generated != "bad id with spaces\r\n" and len(generated) == 32
    assert len(request_id(None)) == 32
    assert len(request_id("x" * 500)) == 32
