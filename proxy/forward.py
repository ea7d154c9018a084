"""Talking to upstreams: one keep-alive pool per upstream, streaming in both directions.

Bodies are never buffered here unless the caller hands over bytes: the request body is an
async iterator over the client's stream, and the response body is relayed chunk by chunk,
so a 1 GiB upload or download passes with flat memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from multidict import CIMultiDict
from yarl import URL

from proxy.client import ConnectionPool, Interim, UpstreamResponse
from proxy.config.model import Upstream
from proxy.errors import error_response, parser_reason
from proxy.filters.headers import HOP_BY_HOP, connection_tokens
from proxy.http1 import PLAIN_NAMES
from proxy.upstream.guard import ClientFault

if TYPE_CHECKING:
    from proxy.exchange import Exchange
    from proxy.shadow.memory import Hold

# aiohttp adds these unless told not to; a proxy must not invent request headers.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamPool:
    """A keep-alive `ConnectionPool` per upstream definition (plus an aiohttp session for
    WebSocket upgrades, which are rare and need aiohttp's WebSocket client).

    Pools are keyed by the whole `Upstream` value: a reload that leaves an upstream
    unchanged keeps its warm connections; one that changes it gets a fresh pool, and the
    old pool is closed once the requests using it are done.
    """

    def __init__(self) -> None:
        self._pools: dict[Upstream, ConnectionPool] = {}
        # By identity first: hashing an `Upstream` value (every field, nested ones too) cost
        # about 2 µs per request; the runtime hands out the same objects until a reload.
        self._by_id: dict[int, tuple[Upstream, ConnectionPool]] = {}
        self._ws_session: aiohttp.ClientSession | None = None

    def pool(self, upstream: Upstream) -> ConnectionPool:
        known = self._by_id.get(id(upstream))
        if known is not None and known[0] is upstream:
            return known[1]
        pool = self._pools.get(upstream)
        if pool is None:
            pool = self._pools[upstream] = ConnectionPool(upstream)
        if len(self._by_id) > 4 * len(self._pools) + 64:
            self._by_id.clear()  # objects of old runtimes: forget them
        self._by_id[id(upstream)] = (upstream, pool)
        return pool

    def websocket_session(self) -> aiohttp.ClientSession:
        if self._ws_session is None:
            from proxy.websocket import HandshakeResponse, no_redirects

            self._ws_session = aiohttp.ClientSession(
                response_class=HandshakeResponse,
                trace_configs=[no_redirects()],
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._ws_session

    async def retire(self, keep: set[Upstream], grace: float = 30.0) -> None:
        """Close pools of upstreams no longer configured, after in-flight use drains."""
        stale = [self._pools.pop(u) for u in list(self._pools) if u not in keep]
        self._by_id = {k: v for k, v in self._by_id.items() if v[0] in keep}
        if stale:
            await asyncio.sleep(grace)
            for pool in stale:
                await pool.close()

    async def close(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.close()
        if self._ws_session is not None:
            await self._ws_session.close()


SMALL_BODY = 64 * 1024  # responses up to this size (with a Content-Length) are sent in one write


def upstream_target(upstream: Upstream, path: str, query: str | None) -> str:
    """The origin-form request target: base path + path, query forwarded byte for byte."""
    target = upstream.base_path + path
    return target if query is None else f"{target}?{query}"


def upstream_url(upstream: Upstream, path: str, query: str | None) -> URL:
    """The upstream URL, with path and query forwarded byte for byte (already encoded)."""
    target = upstream.base_path + path
    if query is not None:
        target += "?" + query
    return URL(f"{upstream.scheme}://{upstream.host}:{upstream.port}{target}", encoded=True)


class ClientBodyError(ClientFault):
    """The client's request body turned out malformed after streaming began (a bad chunk
    size, data overrunning a chunk, a framing field in the trailers).

    The client's fault, not the upstream's: answer `status` and close the connection. The
    upstream request is cut (its connection aborted), so it never sees a complete request,
    and its breaker does not count it.
    """

    status = 400


class ClientBodyTimeout(ClientBodyError):
    """The client sent no byte of its body for `limits.idle_timeout` seconds (nginx's
    `client_body_timeout`): 408, as for a head that stalls."""

    status = 408


async def _read_some(stream: aiohttp.StreamReader, idle: float | None = None) -> bytes:
    """Some of a body; `idle`: seconds the client may send nothing (None: no limit).
    Only this wait's own expiry is the client's 408: a stream failing with a timeout of
    its own (an upstream body read past its deadline) raises that as it is."""
    try:
        if idle is None:
            return await stream.readany()
        async with asyncio.timeout(idle) as waited:
            return await stream.readany()
    except HttpProcessingError as exc:
        # Not the bytes llhttp quotes: the client's body may hold a secret (a form's password).
        raise ClientBodyError(f"malformed request body: {parser_reason(exc)}") from exc
    except TimeoutError:
        if idle is None or not waited.expired():
            raise
        raise ClientBodyTimeout(
            f"the client sent no request body bytes for {idle:g} s (limits.idle_timeout)"
        ) from None


class BodySource:
    """The client's request body as an async iterator that records whether any byte left.

    Retries and fallbacks may only replay a request whose body never reached an upstream.
    """

    __slots__ = ("_stream", "_prefix", "_idle", "sent")

    def __init__(
        self, stream: aiohttp.StreamReader, prefix: bytes = b"", idle: float | None = None
    ) -> None:
        self._stream = stream
        self._prefix = prefix  # already read from the stream (see `buffer_prefix`)
        self._idle = idle  # seconds the client may send nothing (`ClientBodyTimeout`)
        self.sent = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._prefix:
            self.sent = True
            yield self._prefix
        while True:
            chunk = await _read_some(self._stream, self._idle)
            if not chunk:
                return
            self.sent = True
            yield chunk


async def buffer_prefix(
    stream: aiohttp.StreamReader, limit: int, idle: float | None = None
) -> tuple[bytes, bool | None]:
    """Read up to `limit` bytes of a body (`idle`: as for `BodySource`).

    Returns (body, None) when the whole body fit, else (what was read, True): the caller
    then streams the prefix followed by the rest (`BodySource(stream, prefix=...)`).
    """
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await _read_some(stream, idle)
        if not chunk:
            return b"".join(parts), None
        size += len(chunk)
        parts.append(chunk)
        if size > limit:
            return b"".join(parts), True


def header_text(value: bytes) -> str:
    """A response header value as text that aiohttp's writer turns back into the same bytes.

    The writer encodes header text as UTF-8, so a UTF-8 value must be decoded as UTF-8 to
    pass byte for byte (latin-1 would double-encode `ë` into `Ã«`). Bytes that are not
    UTF-8 (legacy latin-1 values) are read as latin-1: re-encoded, but never lost, where
    surrogate escapes would be silently dropped by the writer.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def response_headers(resp: UpstreamResponse | aiohttp.ClientResponse) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones, in order, repeats kept."""
    raw = [(k.decode("latin-1"), header_text(v)) for k, v in resp.raw_headers]
    drop = HOP_BY_HOP | connection_tokens(raw)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in raw:
        if name.lower() not in drop:
            out.add(name, value)
    return out


_OWS = (0x20, 0x09)


def unrelayable(status: int, raw_headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """Why an upstream response cannot be passed on faithfully, or None. Pure.

    Only a final status (200-599): a 101 the client never asked for, or any other status
    here, would leave client and proxy disagreeing about what the next bytes on the
    connection are. Only the `chunked` transfer coding: Transfer-Encoding is hop-by-hop, so
    relaying `gzip, chunked` would hand the client still-coded bytes labelled as the body.
    """
    if not 200 <= status <= 599:
        return f"upstream sent status {status} where a final response was due"
    for name, value in raw_headers:
        if name and name[-1] in _OWS:
            # RFC 9112 §5.1: whitespace before the colon; llhttp lets `Content-Length : 3`
            # through as another field, and relayed next to the proxy's own framing it
            # would tell a lenient client or cache a second length.
            return "upstream sent whitespace between a header field name and its colon"
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            problem = _coding_problem(value)
            if problem is not None:
                return problem
    return None


def _coding_problem(value: bytes) -> str | None:
    """A `Transfer-Encoding` value naming a coding other than `chunked` (`unrelayable`)."""
    for coding in value.decode("latin-1").split(","):
        coding = coding.strip().lower()
        if coding and coding != "chunked":
            return f"upstream used transfer coding {coding!r}, which cannot be relayed"
    return None


class BodyCapture:
    """A relayed response body kept for shadow comparison, up to `limit` bytes; past the
    limit it is abandoned (a body too big to compare is not compared).

    With a `hold` (`proxy.shadow.memory.Hold`), every byte kept is taken from the shadow
    side's memory budget as it arrives; when the budget has no room the capture is abandoned
    too (`out_of_memory`), and an abandoned capture gives its bytes back at once. The client's
    answer is relayed the same either way. Whoever ends up with the hold releases it:
    `take_hold` hands it over with the body, `release` (idempotent) is for every other end.
    """

    __slots__ = ("limit", "_parts", "_size", "abandoned", "out_of_memory", "failed", "_hold")

    def __init__(self, limit: int, hold: Hold | None = None) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.abandoned = False
        self.out_of_memory = False  # abandoned because the shadow memory budget was full
        self.failed = False  # abandoned because the client got the proxy's answer instead
        self._hold = hold

    def add(self, chunk: bytes) -> None:
        if self.abandoned:
            return
        self._size += len(chunk)
        if self._size > self.limit:
            self._abandon()
        elif self._hold is not None and not self._hold.grow(len(chunk)):
            self.out_of_memory = True
            self._abandon()
        else:
            self._parts.append(chunk)

    def _abandon(self) -> None:
        self.abandoned = True
        self.release()

    def fail(self) -> None:
        """The upstream's answer was replaced by the proxy's own (a 502 or 504: it was faulty,
        or failed before its small body was whole): there is no primary answer to compare."""
        self.failed = True
        self._abandon()

    def body(self) -> bytes | None:
        """The whole body, or None when it was abandoned. The parts are let go of: the body
        is the one copy kept from here on."""
        if self.abandoned:
            return None
        body = b"".join(self._parts)
        self._parts = [body]
        return body

    def take_hold(self) -> Hold | None:
        """The hold on the body's bytes, handed over (this capture no longer releases it)."""
        hold, self._hold = self._hold, None
        return hold

    def release(self) -> None:
        """Done with the capture: let go of its bytes and give them back to the budget (the
        hold, unless `take_hold` handed it over with the body). Idempotent."""
        self._parts = []
        if self._hold is not None:
            self._hold.release()
            self._hold = None


def is_small(method: str, status: int, length: bytes | None) -> bool:
    """Whether a response's body is known to be small: sent with its head in one write."""
    return (
        method == "HEAD"
        or status in (204, 304)
        or (length is not None and length.isdigit() and int(length) <= SMALL_BODY)
    )


def whole_body(
    status: int, raw_headers: Sequence[tuple[bytes, bytes]], payload: StreamReader, method: str
) -> bytes | None:
    """`small_body` without waiting, for the express path: the body of a complete response
    (`payload` at its end) when it may be relayed in one write as it is; None when
    `small_body` would answer otherwise, or a retry or fallback may follow (5xx).

    `unrelayable`'s checks and the `Content-Length` lookup in one pass over the headers
    (the first such field counts, as `UpstreamResponse.header` reads it)."""
    if not 200 <= status < 500:  # below 200: `unrelayable`; 5xx: a retry may follow
        return None
    length = None
    for name, value in raw_headers:
        if name in PLAIN_NAMES:
            continue
        n = len(name)
        if n == 14:
            if length is None and name.lower() == b"content-length":
                length = value
        elif n == 17 and name.lower() == b"transfer-encoding" and _coding_problem(value):
            return None
        if n and name[-1] in _OWS:
            return None
    if not is_small(method, status, length):
        return None
    return b"" if method == "HEAD" else payload.read_nowait(-1)


async def small_body(
    upstream_resp: UpstreamResponse,
    method: str,
    *,
    route: str | None,
    request_id: str,
    accept: str | None,
) -> bytes | web.Response | None:
    """What both lanes' relays do first: the whole body when it is small and of known size
    (sent with the head in one write; every syscall counts on the hot path), None when it
    must stream, or the proxy's own answer instead: a 502 for a response `unrelayable`
    finds fault with, or a 504/502 when the upstream fails before its small body is
    complete (nothing has reached the client yet, so it can still get a proper answer).
    """
    problem = unrelayable(upstream_resp.status, upstream_resp.raw_headers)
    if problem is not None:
        return error_response(502, problem, route=route, request_id=request_id, accept=accept)
    if not is_small(method, upstream_resp.status, upstream_resp.header(b"content-length")):
        return None
    try:
        return b"" if method == "HEAD" else await upstream_resp.content.read()
    except (TimeoutError, aiohttp.ClientError, ConnectionResetError) as exc:
        return error_response(
            504 if isinstance(exc, TimeoutError) else 502,
            f"upstream failed before its body was complete: {exc.__class__.__name__}",
            route=route,
            request_id=request_id,
            accept=accept,
        )


class _AsTheUpstreamSaid:
    """A relayed answer keeps the upstream's `Content-Type`, or its lack of one.

    aiohttp gives content without a type `application/octet-stream`, which RFC 9110 §8.3
    lets an origin server do; a proxy that did so would change the answer (a browser
    sniffs an untyped body and may render it, but downloads an octet-stream one).
    """

    async def _prepare_headers(self) -> None:
        typed = "Content-Type" in self.headers  # type: ignore[attr-defined]
        await super()._prepare_headers()  # type: ignore[misc]
        if not typed:
            self.headers.popall("Content-Type", None)  # type: ignore[attr-defined]


class RelayedResponse(_AsTheUpstreamSaid, web.Response):
    """A whole upstream answer, relayed."""


class RelayedStreamResponse(_AsTheUpstreamSaid, web.StreamResponse):
    """A streamed upstream answer, relayed."""


def last_on_connection(request: web.BaseRequest) -> bool:
    """Whether the client connection closes after this request's answer (its chunked body
    ended with trailer fields, or the server is stopping): see
    `proxy.aiohttp_lane.EdgeRequestHandler.answers_last`."""
    answers_last = getattr(request.protocol, "answers_last", None)
    return answers_last is not None and answers_last(request)


class ClientGone(ConnectionResetError):
    """The client's connection failed under a write of its answer: the client left, the
    upstream did not fail (the access line says 499, and no upstream is blamed). Still a
    ConnectionResetError for code that only wants to know the connection is gone."""


async def relay(
    request: web.BaseRequest,
    upstream_resp: UpstreamResponse,
    extra_headers: dict[str, str],
    *,
    capture: BodyCapture | None = None,
    route: str | None = None,
    ex: Exchange | None = None,
) -> tuple[web.StreamResponse, int]:
    """Stream an upstream response to the client; returns it and the body bytes sent.

    With `capture`, the body is also kept for shadow comparison. `route` names the route
    in the proxy's own error answers (see `small_body`). `ex`: its `bytes_out` says what a
    streamed body handed to the client's transport even when the relay fails part-way
    (the upstream dies, the client leaves), for the access line.
    """
    whole = await small_body(
        upstream_resp,
        request.method,
        route=route,
        request_id=extra_headers.get("X-Request-ID", ""),
        accept=request.headers.get("Accept"),
    )
    if isinstance(whole, web.Response):
        if capture is not None:
            capture.fail()
        return whole, 0
    headers = response_headers(upstream_resp)
    headers.update(extra_headers)
    if whole is not None:
        if capture is not None:
            capture.add(whole)
        small = RelayedResponse(
            status=upstream_resp.status, reason=upstream_resp.reason, headers=headers
        )
        if whole:
            small.body = whole
        return small, len(whole)
    out = RelayedStreamResponse(
        status=upstream_resp.status, reason=upstream_resp.reason, headers=headers
    )
    if (
        upstream_resp.header(b"content-length") is None and request.version < aiohttp.HttpVersion11
    ) or last_on_connection(request):
        out.force_close()
    sent = 0
    try:
        try:
            await out.prepare(request)
        except ConnectionResetError as exc:
            raise ClientGone(str(exc)) from exc
        if request.method != "HEAD":
            content = upstream_resp.content
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                if capture is not None:
                    capture.add(chunk)
                try:
                    await out.write(chunk)
                except asyncio.CancelledError:
                    # Only its drain waits, after the chunk went to the transport (a write
                    # refused by a closing transport raises before it, and is not counted).
                    sent += len(chunk)
                    raise
                except ConnectionResetError as exc:  # the client's side (a read's is not)
                    raise ClientGone(str(exc)) from exc
                sent += len(chunk)
        try:
            await out.write_eof()
        except ConnectionResetError as exc:
            raise ClientGone(str(exc)) from exc
    finally:
        if ex is not None:
            ex.bytes_out = sent
    return out, sent


def interim_relay(request: web.BaseRequest) -> Interim | None:
    """Forwards upstream 1xx responses (RFC 9110 §15.2: a proxy must), to HTTP/1.1 clients."""
    if request.version < aiohttp.HttpVersion11:
        return None

    async def relay_interim(
        status: int, reason: str, raw_headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
        drop = HOP_BY_HOP | connection_tokens(headers)
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers if k.lower() not in drop]
        lines.append("\r\n")
        await request.writer.write("".join(lines).encode("latin-1"))

    return relay_interim


def abort_connection(request: web.BaseRequest) -> None:
    """A response already under way cannot change status: cut the connection instead."""
    transport: Any = request.transport
    if transport is not None:
        transport.abort()
