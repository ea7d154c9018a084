"""Edge admission on plain data: what is refused, and what routing and forwarding get."""

from __future__ import annotations

import pytest

from proxy.edge import EdgeRequest, Refused, admit, bare_host

ALLOW = "GET, HEAD"


def ok(method="GET", target="/a", version=(1, 1), headers=(("Host", "shop"),), hosts=("shop",)):
    return admit(method, target, version, list(headers), list(hosts), ALLOW)


def refused(**kw) -> Refused:
    with pytest.raises(Refused) as info:
        ok(**kw)
    return info.value


def test_origin_form_is_normalized_once_for_routing_and_forwarding():
    edge = ok(target="//api/./customers/../orders?b=2&a=1")
    assert edge == EdgeRequest("/api/orders", "b=2&a=1", "shop", "shop", False)


def test_absolute_form_authority_replaces_host():
    edge = ok(target="http://other.example:8080/x?q", hosts=("shop",))
    assert (edge.path, edge.query, edge.host_header, edge.host) == (
        "/x",
        "q",
        "other.example:8080",
        "other.example",
    )


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        (dict(version=(2, 0)), 505),
        (dict(version=(0, 9)), 505),
        (dict(method="TRACE"), 405),
        (dict(method="CONNECT", target="shop:443"), 400),
        (dict(target="/a%2fb"), 400),
        (dict(target="/a#frag"), 400),
        (dict(hosts=()), 400),
        (dict(hosts=("a", "b")), 400),
        (dict(hosts=("user@shop",), headers=(("Host", "user@shop"),)), 400),
        (dict(headers=(("Host", "shop"), ("Expect", "magic"))), 417),
        (dict(headers=(("Host", "shop"), ("Transfer-Encoding", ""))), 400),
        (dict(headers=(("Host", "shop"), ("Authorization", "a"), ("authorization", "b"))), 400),
    ],
)
def test_refusals(kw, status):
    assert refused(**kw).status == status


def test_one_authorization_is_admitted_and_a_second_named():
    assert ok(headers=(("Host", "shop"), ("Authorization", "Bearer a"), ("X-Auth", "b")))
    exc = refused(headers=(("Host", "shop"), ("AUTHORIZATION", "a"), ("Authorization", "a")))
    assert "more than one Authorization" in exc.message


def test_trace_names_the_allowed_methods():
    assert refused(method="TRACE").headers == {"Allow": ALLOW}


def test_http10_without_host_is_admitted():
    edge = ok(version=(1, 0), headers=(), hosts=())
    assert edge.host_header == "" and edge.path == "/a"


def test_expect_continue_only_for_http11():
    headers = (("Host", "shop"), ("Expect", "100-continue"))
    assert ok(headers=headers).expect_continue
    assert not ok(version=(1, 0), headers=headers).expect_continue


def test_options_asterisk():
    assert ok(method="OPTIONS", target="*").asterisk
    assert refused(method="GET", target="*").status == 400


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("Shop.Example:8080", "shop.example"),
        ("shop.example.", "shop.example"),
        ("[::1]:80", "[::1]"),
    ],
)
def test_bare_host(header, host):
    assert bare_host(header) == host
