"""The fast lane's response heads (proxy/http1.py), on plain data."""

from __future__ import annotations

from proxy.http1 import CHUNKED, EMPTY, LENGTH, response_head

DATE = b"Thu, 26 Nov 2026 05:00:00 GMT"


def head(raw, *, status=200, method="GET", version=(1, 1), rid=b"rid", keep_alive=True):
    return response_head(version, method, status, "OK", raw, rid, keep_alive=keep_alive, date=DATE)


def lines(h) -> list[bytes]:
    return h.data.split(b"\r\n")[1:-2]


def test_headers_pass_in_order_with_ours_added():
    h = head([(b"Content-Type", b"a/b"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
              (b"Content-Length", b"2"), (b"Connection", b"keep-alive"),
              (b"Keep-Alive", b"timeout=5")])  # fmt: skip
    assert lines(h) == [
        b"Content-Type: a/b",
        b"Set-Cookie: a=1",
        b"Set-Cookie: b=2",
        b"Content-Length: 2",
        b"X-Request-ID: rid",
        b"Date: " + DATE,
        b"Server: " + h.data.split(b"Server: ")[1].split(b"\r\n")[0],
    ]
    assert (h.framing, h.keep_alive) == (LENGTH, True)


def test_names_listed_in_connection_are_dropped_even_when_they_come_first():
    h = head([(b"X-Secret", b"1"), (b"Content-Type", b"a/b"), (b"Content-Length", b"0"),
              (b"Connection", b"X-Secret, Content-Type")])  # fmt: skip
    names = [line.split(b":")[0].lower() for line in lines(h)]
    assert b"x-secret" not in names and b"connection" not in names
    assert b"content-type" not in names  # listed too: dropped, and no default for an empty body


def test_the_upstream_request_id_is_replaced_once():
    h = head([(b"X-Request-ID", b"theirs"), (b"x-request-id", b"again"), (b"Content-Length", b"0")])
    assert [line for line in lines(h) if line.lower().startswith(b"x-request-id")] == [
        b"X-Request-ID: rid"
    ]


def test_framing_by_status_method_and_version():
    assert head([(b"Content-Length", b"3")], status=204).framing == EMPTY
    assert b"Content-Length" not in head([(b"Content-Length", b"3")], status=304).data
    assert head([(b"Content-Length", b"3")], method="HEAD").framing == EMPTY
    chunked = head([])
    assert chunked.framing == CHUNKED and b"Transfer-Encoding: chunked" in chunked.data
    old = head([], version=(1, 0))
    assert old.keep_alive is False and b"Transfer-Encoding" not in old.data
    closing = head([(b"Content-Length", b"0")], keep_alive=False)
    assert b"Connection: close" in closing.data and closing.keep_alive is False


def test_any_spelling_of_a_name_has_the_same_role():
    """Common names are looked up as sent (`_ROLE_AS_SENT`), others lower-cased: every
    spelling must come out the same."""
    spellings = [
        (b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-length"),
        (b"X-Request-ID", b"x-request-id", b"X-Request-Id", b"X-REQUEST-ID"),
        (b"Server", b"server", b"SERVER"),
        (b"Date", b"date", b"DATE"),
        (b"Keep-Alive", b"keep-alive", b"KEEP-ALIVE"),
        (b"Connection", b"connection", b"CONNECTION"),
    ]
    for group in spellings:
        heads = [
            head([(name, b"2"), (b"Content-Length", b"2")], rid=b"r").data.lower() for name in group
        ]
        assert len(set(heads)) == 1, group
