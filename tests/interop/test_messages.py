"""What passes through unchanged: big and repeated headers, UTF-8 bytes, long queries,
validators (304), ranges (206, multipart), content codings, HTTP/1.0 upstream bodies."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.parse
import urllib.request

import aiohttp
import httpx

from proxy.forward import header_text
from tests.interop.aio_app import PAYLOAD, brotli_stored
from tests.interop.conftest import BINARY, TEXT
from tests.interop.h10_server import BODY
from tests.interop.wsgi_app import ETAG


def raw_get(stack, path: str, headers: dict[str, str | bytes] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_request_headers_near_the_limit_are_served_and_over_it_refused(stack):
    big = "v" * 7900  # the whole line stays under limits.max_header_size (8190)
    for path in ("/ai/echo", "/gt/echo"):
        r = httpx.get(stack.url + path, headers={"X-Big": big}, timeout=10)
        assert r.status_code == 200, (path, r.status_code)
        seen = r.json()["headers"]
        values = dict(seen) if isinstance(seen, list) else {"X-Big": seen.get("HTTP_X_BIG")}
        assert values["X-Big"] == big
    many = {f"X-H{i}": "x" * 40 for i in range(80)}
    assert httpx.get(stack.url + "/ai/echo", headers=many, timeout=10).status_code == 200
    r = httpx.get(stack.url + "/ai/echo", headers={"X-Big": "v" * 9000}, timeout=10)
    assert r.status_code in (400, 431)
    stack.alive()


def test_big_response_header_is_relayed(stack):
    resp, _ = raw_get(stack, "/ai/bigheader?size=12000")
    assert resp.status == 200 and resp.getheader("X-Big") == "b" * 12000


def test_many_set_cookie_headers_keep_their_order(stack):
    for path, prefix in (("/gt/cookies?n=60", "c"), ("/ai/cookies?n=60", "k")):
        resp, _ = raw_get(stack, path)
        cookies = [v for k, v in resp.getheaders() if k.lower() == "set-cookie"]
        assert [c.split("=")[0] for c in cookies] == [f"{prefix}{i}" for i in range(60)], path


def test_utf8_header_values_pass_byte_for_byte(stack):
    value = "Zoë Ünïcödé 東京".encode()
    resp, body = raw_get(stack, "/ai/echo", {"X-Name": value})
    sent = dict(json.loads(body)["headers"])
    assert sent["X-Name"].encode() == value
    resp, _ = raw_get(stack, "/ai/utf8header")
    # http.client decodes header bytes as latin-1
    assert resp.getheader("X-Name").encode("latin-1") == value


def test_utf8_and_very_long_query_strings_are_forwarded_verbatim(stack):
    q = urllib.parse.urlencode({"name": "Zoë 東京", "emoji": "🦊", "plus": "a+b c"})
    # gunicorn's request line limit is 4094 bytes; aiohttp's and the proxy's 8190.
    cases = [("/ai/echo", q), ("/gt/echo", q)]
    cases += [("/ai/echo", "&".join(f"k{i}=" + "v" * 20 for i in range(310)))]  # ~7.9 KB
    cases += [("/gt/echo", "&".join(f"k{i}=" + "v" * 20 for i in range(150)))]  # ~3.8 KB
    for path, query in cases:
        with urllib.request.urlopen(f"{stack.url}{path}?{query}", timeout=10) as resp:
            got = json.loads(resp.read())
        assert got.get("raw_query", got.get("query")) == query, (path, len(query))
    # beyond the upstream's own limit: its answer is relayed, and the proxy stays usable
    too_long = "&".join(f"k{i}=" + "v" * 20 for i in range(200))
    r = httpx.get(f"{stack.url}/gt/echo?{too_long}", timeout=10)
    assert r.status_code in (400, 414)
    assert httpx.get(f"{stack.url}/gt/echo", timeout=10).status_code == 200


def test_etag_round_trip_gives_304(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as c:
        r = c.get("/gt/etag")
        assert r.status_code == 200 and r.headers["etag"] == ETAG
        r = c.get("/gt/etag", headers={"If-None-Match": ETAG})
        assert r.status_code == 304 and r.content == b""
        first = c.get("/ng/file.bin")
        etag = first.headers["etag"]
        r = c.get("/ng/file.bin", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
        r = c.get("/ng/file.bin", headers={"If-Modified-Since": first.headers["last-modified"]})
        assert r.status_code == 304
        # the connection is still in sync after bodiless answers
        assert c.get("/ng/file.bin").content == BINARY


def test_single_and_multiple_ranges(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as c:
        r = c.get("/ng/file.bin", headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == BINARY[100:200]
        assert r.headers["content-range"] == f"bytes 100-199/{len(BINARY)}"
        r = c.get("/ng/file.bin", headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == BINARY[-10:]
        r = c.get("/ng/file.bin", headers={"Range": "bytes=0-9,1000-1009"})
        assert r.status_code == 206
        ctype = r.headers["content-type"]
        assert ctype.startswith("multipart/byteranges; boundary=")
        boundary = ctype.split("boundary=")[1].encode()
        parts = [p for p in r.content.split(b"--" + boundary) if b"Content-Range" in p]
        bodies = [p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") for p in parts]
        assert bodies == [BINARY[0:10], BINARY[1000:1010]]
        r = c.get("/ng/file.bin", headers={"Range": f"bytes={len(BINARY) + 5}-"})
        assert r.status_code == 416


def test_content_codings_pass_untouched(stack):
    resp, body = raw_get(stack, "/ai/compressed/br", {"Accept-Encoding": "br"})
    assert resp.getheader("Content-Encoding") == "br"
    assert body == brotli_stored(PAYLOAD)
    resp, body = raw_get(stack, "/ai/compressed/gzip", {"Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    assert body[:2] == b"\x1f\x8b" and gzip.decompress(body) == PAYLOAD
    resp, body = raw_get(stack, "/ng/text.txt", {"Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == TEXT
    resp, body = raw_get(stack, "/ng/text.txt")
    assert resp.getheader("Content-Encoding") is None and body == TEXT


async def test_aiohttp_client_decodes_nginx_gzip_and_reads_http10_bodies(stack):
    async with aiohttp.ClientSession(base_url=stack.url) as s:
        async with s.get("/ng/text.txt") as r:
            assert r.headers.get("Content-Encoding") == "gzip"
            assert await r.read() == TEXT
        for _ in range(3):
            async with s.get("/h10/x") as r:
                assert r.status == 200 and await r.read() == BODY
            async with s.post("/h10/x", data=b"12345") as r:
                assert await r.read() == b"got 5 bytes"


def test_http10_upstream_body_reaches_http11_and_http10_clients(stack):
    resp, body = raw_get(stack, "/h10/x?a=1")
    assert resp.status == 200 and body == BODY
    assert resp.getheader("X-Seen-Path") == "/h10/x?a=1"
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    conn.request("GET", "/h10/x")
    resp = conn.getresponse()
    # An HTTP/1.1 status line (RFC 9110 §2.5), and a close the 1.0 client can see.
    assert resp.version == 11 and resp.getheader("Connection") == "close"
    assert resp.will_close and resp.read() == BODY
    conn.close()


def test_header_text_round_trips_through_the_writers_utf8():
    for raw in ("Zoë 東京".encode(), b"plain", "🦊".encode()):
        assert header_text(raw).encode("utf-8") == raw
    assert header_text(b"caf\xe9") == "café"  # latin-1 bytes: kept, re-encoded


def test_unusual_statuses_and_reason_phrases_pass_through(stack):
    for code, reason in ((299, "Custom Thing"), (418, "I'm a teapot"), (451, "Legal"),
                         (599, "Network Timeout"), (200, "Fine")):  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        conn.request(
            "GET", "/gt/status?" + urllib.parse.urlencode({"code": code, "reason": reason})
        )
        resp = conn.getresponse()
        assert (resp.status, resp.reason) == (code, reason)
        assert json.loads(resp.read()) == {"status": f"{code} {reason}"}
        conn.close()


def test_delete_and_options_with_bodies(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as c:
        assert c.request("DELETE", "/gt/echo", content=b"abc").json()["body_len"] == 3
        r = c.request("OPTIONS", "/ai/echo", content=b"xyz")
        assert r.json()["method"] == "OPTIONS" and r.json()["body_len"] == 3
