"""`ChunkScan`, the aiohttp lane's count of a chunked body's chunk-extension bytes, read
against a straightforward reference: on any body llhttp accepts, cut anywhere between
reads, it counts exactly the bytes from each size line's `;` to its LF. Losing sync with
llhttp would refuse a valid body (a miscount) or let extensions past the bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.http_parser import HttpRequestParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.aiohttp_lane import ChunkScan

HEAD = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Protocol:
    transport = None

    def pause_reading(self, *args: Any, **kwargs: Any) -> None:
        pass

    def resume_reading(self, *args: Any, **kwargs: Any) -> None:
        pass


def llhttp_reads(body: bytes) -> bytes | None:
    """The data llhttp (strict, as the lane's parser is) reads from `body`, or None when it
    refuses it or finds no end."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(_Protocol(), loop, 2**16)
        try:
            messages, _, _ = parser.feed_data(HEAD + body)
        except Exception:  # noqa: BLE001 - a refusal
            return None
        payload = messages[0][1]
        if payload.exception() is not None or not payload.is_eof():
            return None
        return b"".join(payload._buffer)  # noqa: SLF001
    finally:
        loop.close()


def scanned(body: bytes, cuts: list[int]) -> ChunkScan:
    scan = ChunkScan()
    points = sorted({cut % (len(body) + 1) for cut in cuts} | {0, len(body)})
    for start, end in zip(points, points[1:], strict=False):
        scan.feed(body[start:end])
    return scan


_token = st.text(_TCHAR, min_size=1, max_size=6).map(str.encode)
_quoted = st.lists(
    st.sampled_from([b"a", b";", b"=", b" ", b"\t", b"\xff", b'\\"', b"\\\\", b",", b"0"]),
    max_size=6,
).map(lambda parts: b'"' + b"".join(parts) + b'"')
_extension = st.tuples(_token, st.one_of(st.none(), st.just(b""), _token, _quoted)).map(
    lambda t: b";" + t[0] + (b"" if t[1] is None else b"=" + t[1])
)
_extensions = st.lists(_extension, max_size=3)
# Chunk data that looks like framing: line breaks, `;`, sizes, a last chunk.
_data = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.lists(
        st.sampled_from([b"\n", b"\r", b"\r\n", b";", b"0", b"5;a\r\n", b"\r\n0\r\n\r\n", b"x"]),
        min_size=1,
        max_size=8,
    ).map(b"".join),
)
_zeros = st.integers(0, 80)  # leading zeros: llhttp takes any number


@st.composite
def _size(draw: st.DrawFn, value: int) -> bytes:
    digits = b"%x" % value if value else b""
    if draw(st.booleans()):
        digits = digits.upper()
    return b"0" * draw(_zeros if value else st.integers(1, 80)) + digits


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """A chunked body llhttp accepts, its data, and its extension bytes counted by hand."""
    body, data, expected = [], [], 0
    for chunk in draw(st.lists(_data, max_size=6)):
        exts = b"".join(draw(_extensions))
        expected += len(exts) + 1 if exts else 0  # and the CR ending the line
        body.append(draw(_size(len(chunk))) + exts + b"\r\n" + chunk + b"\r\n")
        data.append(chunk)
    exts = b"".join(draw(_extensions))  # on the last chunk too
    expected += len(exts) + 1 if exts else 0
    body.append(draw(_size(0)) + exts + b"\r\n")
    for name, value in draw(st.lists(st.tuples(_token, _token), max_size=2)):
        body.append(name + b": " + value + b";x=" + b"\r\n")  # trailers are not counted
    body.append(b"\r\n")
    return b"".join(body), b"".join(data), expected


@settings(max_examples=400, deadline=None)
@given(chunked_bodies(), st.lists(st.integers(0, 10_000), max_size=12))
@example((b"0" * 40 + b"5;a=b\r\nhello\r\n0\r\n\r\n", b"hello", 5), [])
@example((b"5;a=b\r\nhe\nlo\r\n0;c\r\n\r\n", b"he\nlo", 8), [3, 5, 6, 7, 15, 16])
def test_the_count_is_every_extension_byte_wherever_reads_are_cut(body, cuts):
    whole, data, expected = body
    assert llhttp_reads(whole) == data, "the generator made a body llhttp refuses"
    scan = scanned(whole, cuts)
    assert (scan.extensions, scan.done) == (expected, True), whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 10_000), max_size=12))
@example(b"-6\r\nabcdefgh\r\n", [4])
@example(b"-FF\r\nabcdefgh\r\n", [2, 5])
def test_any_bytes_are_scanned_forwards(body, cuts):
    """Whatever arrives (llhttp judges it), the scan only moves forwards: it counts no
    byte twice and ends."""
    scan = ChunkScan()
    points = sorted({cut % (len(body) + 1) for cut in cuts} | {0, len(body)})
    for start, end in zip(points, points[1:], strict=False):
        scan.feed(body[start:end])
        assert scan.skip >= 0, scan.skip
        assert scan.extensions <= end, (scan.extensions, end)


@pytest.mark.parametrize("size", [b"-6", b"-8;x", b"-FF", b"0x6", b"+6", b"6_0", b" 6", b""])
def test_a_size_llhttp_refuses_ends_the_count(size):
    """`int(_, 16)` takes a sign, `0x`, `_` and spaces; llhttp takes none of them. A negative
    size moved the scan back onto its own line (`-6\\r\\n`, for ever)."""
    assert llhttp_reads(size + b"\r\nabcdef\r\n0\r\n\r\n") is None
    scan = ChunkScan()
    scan.feed(size + b"\r\n")
    assert scan.done and scan.skip == 0


def test_leading_zeros_do_not_end_the_count():
    """Past 32 bytes of a size line the count gave up: 40 zeros, then any extensions."""
    body = b"0" * 40 + b"1\r\nx\r\n" + b"1;" + b"e" * 20_000 + b"\r\nx\r\n0\r\n\r\n"
    assert llhttp_reads(body) == b"xx"
    assert scanned(body, []).extensions == 20_002
