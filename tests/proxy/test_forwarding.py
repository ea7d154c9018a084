"""Forwarding as a production reverse proxy does it, through real processes."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import httpx

from tests.support.rawhttp import exchange, status_of


def echo(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()


def header_values(payload: dict, name: str) -> list[str]:
    return [v for k, v in payload["headers"] if k.lower() == name.lower()]


def test_unmatched_goes_to_default_and_legacy_mode_to_legacy(proxy, client):
    assert echo(client.get(proxy.url + "/anything"))["server"] == "legacy"
    assert echo(client.get(proxy.url + "/api/orders"))["server"] == "legacy"


def test_extracted_route_rewrites_path_and_keeps_query_bytes(proxy, client):
    got = echo(client.get(proxy.url + "/api/items/42?b=2&a=1&a=%2F&empty=&flag"))
    assert got["server"] == "svc"
    assert got["raw_path"] == "/v1/items/42?b=2&a=1&a=%2F&empty=&flag"


def test_method_condition_falls_back_to_less_specific_route(proxy, client):
    # DELETE is not in svc-items' methods: the /api prefix (legacy mode) takes it.
    assert echo(client.delete(proxy.url + "/api/items/42"))["server"] == "legacy"


def test_host_forwarded_as_sent(proxy, client):
    got = echo(client.get(proxy.url + "/x", headers={"Host": "shop.example:8443"}))
    assert header_values(got, "Host") == ["shop.example:8443"]


def test_forwarding_headers_replace_spoofed_values(proxy, client):
    got = echo(
        client.get(
            proxy.url + "/x",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "Forwarded": "for=6.6.6.6",
                "X-Forwarded-Proto": "https",
            },
        )
    )
    assert header_values(got, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(got, "X-Forwarded-Proto") == ["http"]
    assert header_values(got, "Forwarded")[0].startswith("for=127.0.0.1;proto=http")
    assert header_values(got, "Via") == ["1.1 strangler"]


def test_trusted_proxy_chain_is_kept(start_proxy, client):
    p = start_proxy(extra="trusted_proxies: [127.0.0.0/8]\n")
    got = echo(client.get(p.url + "/x", headers={"X-Forwarded-For": "203.0.113.7"}))
    assert header_values(got, "X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]


def test_hop_by_hop_request_headers_are_dropped_before_adding_ours(proxy):
    raw = exchange(
        proxy.port,
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close, X-Forwarded-For, X-Secret\r\n"
        b"X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\n\r\n",
    )
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    names = {k.lower() for k, _ in body["headers"]}
    assert not names & {"x-secret", "keep-alive", "te", "proxy-connection", "connection"}
    assert header_values(body, "X-Forwarded-For") == ["127.0.0.1"]


def test_hop_by_hop_response_headers_are_dropped(proxy, client):
    resp = client.get(proxy.url + "/hop")
    assert resp.text == "hop"
    assert "x-internal" not in resp.headers and "keep-alive" not in resp.headers


def test_repeated_response_headers_and_cookies_preserved_in_order(proxy, client):
    resp = client.get(proxy.url + "/cookies")
    assert resp.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.headers.get_list("x-multi") == ["one", "two"]


def test_compression_passes_through_untouched(proxy):
    with (
        httpx.Client() as c,
        c.stream("GET", proxy.url + "/gzip", headers={"Accept-Encoding": "gzip"}) as resp,
    ):
        raw = b"".join(resp.iter_raw())
    assert resp.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == b'{"compressed": true}'


def test_redirects_are_not_followed(proxy, client):
    resp = client.get(proxy.url + "/redirect")
    assert resp.status_code == 302 and resp.headers["location"] == "/echo"


def test_head_204_304(proxy, client):
    head = client.head(proxy.url + "/bytes?n=1000&length=1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "1000"
    assert client.get(proxy.url + "/status/204").status_code == 204
    r304 = client.get(proxy.url + "/status/304")
    assert r304.status_code == 304 and r304.content == b""


def test_request_id_kept_or_generated(proxy, client):
    resp = client.get(proxy.url + "/x", headers={"X-Request-ID": "req-abc.1"})
    assert resp.headers["x-request-id"] == "req-abc.1"
    assert header_values(resp.json(), "X-Request-ID") == ["req-abc.1"]
    resp2 = client.get(proxy.url + "/x", headers={"X-Request-ID": "bad id with spaces"})
    rid = resp2.headers["x-request-id"]
    assert rid != "bad id with spaces" and header_values(resp2.json(), "X-Request-ID") == [rid]


def test_request_body_and_chunked_upload_forwarded(proxy, client):
    data = b"0123456789" * 10000
    resp = client.post(proxy.url + "/upload", content=data)
    assert resp.json()["size"] == len(data)

    def gen():
        yield b"a" * 1000
        yield b"b" * 1000

    resp2 = client.post(proxy.url + "/upload", content=gen())
    assert resp2.json()["size"] == 2000


def test_expect_100_continue(proxy):
    raw = exchange(
        proxy.port,
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\nhello",
    )
    # The body came with the head: no client is waiting for a 100 (RFC 9110 §10.1.1).
    assert raw.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in raw, raw
    assert b'"size": 5' in raw


def test_websocket_echo_text_binary_and_close_code(proxy):
    async def run() -> tuple[str, bytes, int | None]:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(proxy.url + "/ws", protocols=["chat"]) as ws,
        ):
            assert ws.protocol == "chat"
            # The upstream's own 101 fields reach the client; the handshake's are the proxy's.
            handshake = ws._response.headers
            assert handshake.getall("Set-Cookie") == ["ws_session=abc; Path=/"]
            assert handshake["X-Upstream"] == "legacy"
            assert len(handshake.getall("Sec-WebSocket-Accept")) == 1
            await ws.send_str("hi")
            text = (await ws.receive()).data
            await ws.send_bytes(b"\x01\x02\x03")
            binary = (await ws.receive()).data
            await ws.send_str("close:4001")
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE
            return text, binary, msg.data

    text, binary, code = asyncio.run(run())
    assert text == "echo:hi"
    assert binary == b"\x03\x02\x01"
    assert code == 4001


def test_path_normalized_before_routing_and_forwarding(proxy):
    raw = exchange(
        proxy.port, b"GET /api/../svc/./a//b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["server"] == "svc" and body["raw_path"] == "/svc/a/b"


def test_encoded_unreserved_chars_route_like_their_decoded_form(proxy):
    raw = exchange(
        proxy.port, b"GET /api/%69tems/7 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["server"] == "svc" and body["raw_path"] == "/v1/items/7"


def test_ambiguous_paths_rejected(proxy):
    for path in [
        b"/svc/%2e%2e/api",
        b"/svc/..%2fapi",
        b"/svc\\..\\api",
        b"/svc/%2E%2E/x",
        b"/a%5cb",
    ]:
        raw = exchange(proxy.port, b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status_of(raw) == 400, (path, raw[:200])


HEADER_ROUTES = """\
- name: beta
  match: {prefix: "/b", headers: {X-Beta: "1"}}
  mode: extracted
  target: svc
- name: https-only
  match: {prefix: "/s", headers: {X-Forwarded-Proto: https}}
  mode: extracted
  target: svc
"""


def test_a_header_condition_is_not_met_by_a_value_the_upstream_never_sees(start_proxy, client):
    """A route chosen on a header the proxy then strips (listed in `Connection`, a spoofed
    forwarding header) or on one of two values is a route the client picks for itself."""
    p = start_proxy(routes=HEADER_ROUTES)
    assert echo(client.get(p.url + "/b", headers={"X-Beta": "1"}))["server"] == "svc"
    for headers in (
        {"X-Beta": "1", "Connection": "X-Beta"},
        [("X-Beta", "1"), ("X-Beta", "0")],
    ):
        assert echo(client.get(p.url + "/b", headers=headers))["server"] == "legacy", headers
    spoofed = echo(client.get(p.url + "/s", headers={"X-Forwarded-Proto": "https"}))
    assert spoofed["server"] == "legacy"
    assert header_values(spoofed, "X-Forwarded-Proto") == ["http"]


def test_a_trusted_proxys_forwarding_header_routes(start_proxy, client):
    p = start_proxy(routes=HEADER_ROUTES, extra="trusted_proxies: [127.0.0.0/8]\n")
    got = echo(client.get(p.url + "/s", headers={"X-Forwarded-Proto": "https"}))
    assert got["server"] == "svc"


def test_a_websocket_route_chosen_by_its_upgrade_header(start_proxy):
    """`Upgrade` and `Connection` are hop-by-hop, but an upgrade forwards them: a route
    conditioned on `Upgrade: websocket` takes the handshake, plain requests go on."""
    p = start_proxy(
        routes="""\
- name: sockets
  match: {prefix: /ws, headers: {Upgrade: websocket}}
  mode: extracted
  target: svc
"""
    )

    async def upstream_of_handshake() -> str:
        async with aiohttp.ClientSession() as s, s.ws_connect(p.url + "/ws") as ws:
            return ws._response.headers["X-Upstream"]

    assert asyncio.run(upstream_of_handshake()) == "svc"
    assert echo(httpx.get(p.url + "/ws/x"))["server"] == "legacy"
