"""The upstream HTTP/1.1 client: pooled keep-alive connections, streaming both ways.

Why not `aiohttp.ClientSession`: a proxy already has every header and the exact target
bytes, so the session's URL handling, cookie jar, auto headers, redirect logic and tracing
signals are pure overhead; profiling showed them at about a third of the proxy's CPU per
request (bench/RESULTS.md). This client keeps what matters from aiohttp, its protocol class and its
strict C (llhttp) response parser, and writes the request head itself.

Responses are parsed by llhttp, so an upstream that sends both Content-Length and
Transfer-Encoding, differing lengths, or a malformed status line is an error (502 upstream),
never a body the proxy and the upstream framed differently.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import ClientPayloadError
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from proxy.config.model import IDEMPOTENT_METHODS, Upstream

MAX_IDLE = 256  # idle connections kept per upstream
# A read or total timeout looks at the sockets once before it fails an exchange: it moves
# `_LOOK` seconds on (uvloop's timers count whole milliseconds; a shorter one would run
# before the poll). uvloop (libuv) runs due timers before it reads the sockets, so a process
# that stood still past a deadline (SIGSTOP, a paused VM or container, a frozen cgroup, a
# blocked loop) timed out every exchange in flight although their answers had arrived.
_LOOK = 0.01
READ_BUFSIZE = 64 * 1024


# Relays one interim (1xx) response: status, reason, raw headers.
Interim = Callable[[int, str, Sequence[tuple[bytes, bytes]]], Awaitable[None]]


class ConnectFailed(OSError):
    """The TCP (or TLS) connection could not be made: nothing was sent."""


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not valid HTTP/1.1, or hung up mid-message."""


class UpstreamTimeout(TimeoutError):
    """The upstream exceeded a connect, read or total timeout."""


class UpstreamResponse:
    """Status and headers as received; `content` streams the body."""

    __slots__ = ("status", "reason", "raw_headers", "content", "_proto", "_pool", "_deadline")

    def __init__(
        self,
        status: int,
        reason: str,
        raw_headers: Sequence[tuple[bytes, bytes]],
        content: StreamReader,
        proto: ResponseHandler,
        pool: ConnectionPool,
        deadline: _Deadline | None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.content = content
        self._proto: ResponseHandler | None = proto
        self._pool = pool
        self._deadline = deadline

    def header(self, name: bytes) -> bytes | None:
        lname = name.lower()
        for k, v in self.raw_headers:
            if k.lower() == lname:
                return v
        return None

    async def read(self) -> bytes:
        return await self.content.read()

    def discard(self) -> None:
        """Close the connection, whatever was read of the body: the answer is not one to
        relay, and its connection is not one to trust with another request."""
        if self._proto is not None:
            self._proto.force_close()
        self.release()

    def release(self) -> None:
        """Give the connection back when the body was read to its end; otherwise close it."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        proto, self._proto = self._proto, None
        if proto is None:
            return
        if isinstance(proto, _UpstreamProtocol):
            proto.drop_spare()
        if self.content.is_eof() and not proto.should_close and proto.is_connected():
            self._pool.put(proto)
        else:
            proto.close()


class _UpstreamProtocol(ResponseHandler):
    """aiohttp's client protocol, minus two per-request costs the profile showed.

    * The read timeout is checked lazily: aiohttp cancels and re-creates a timer on every
      chunk received, and cancels it at every response's end; here a chunk only moves the
      deadline, the end of a response clears it, and the one timer re-arms itself when it
      fires early (and lets go when it finds nothing to time). The total timeout
      (`total_deadline`) the same way. A uvloop timer set and cancelled costs about as much
      as writing a request's head: twice per request, it was ~2% of the express path.
    * The response parser is kept for the next request on the connection when its
      settings are the same, instead of a new one per request (each response is read to
      its end before a connection is reused, so the parser is between messages), except
      after a chunked response (`forget_parser_if_chunked`).
    """

    _read_deadline: float | None = None  # loop time; None: no read is being timed
    _read_when = 0.0  # when `_read_timeout_handle` fires
    _read_looked = False  # the read deadline passed once and moved on for a look (`_LOOK`)
    _total: _Deadline | None = None
    _params: tuple[bool, float | None] | None = None
    # Called once, from the loop, when the response (or a failure) is in: how `Pending`
    # waits without a task. From the loop rather than from inside the read, as a task's
    # wake-up would be: answers that arrive together are relayed together.
    _notify: Callable[[], None] | None = None

    # Set by `expect_response`: no byte of this response has been parsed yet, so a read that
    # fails to parse begins at the response's first byte (`_salvage` may re-read it).
    _at_start = False
    _feeding: bytes | None = None
    # Seconds the upstream's last response said this connection may stay idle and still
    # be used (`Keep-Alive: timeout=N`, less a second), None: it said nothing.
    keep_idle: float | None = None

    def data_received(self, data: bytes) -> None:
        if self._at_start:
            self._at_start = False
            self._feeding = data
            try:
                super().data_received(data)
            finally:
                self._feeding = None
        else:
            super().data_received(data)
        self._kick()

    def set_exception(self, *args: Any, **kwargs: Any) -> None:
        data, self._feeding = self._feeding, None
        salvageable = data is not None and args and isinstance(args[0], HttpProcessingError)
        if salvageable and self._salvage(data):  # type: ignore[arg-type]
            return
        super().set_exception(*args, **kwargs)
        self._kick()

    def _salvage(self, data: bytes) -> bool:
        """A complete response followed by bytes that are not one (a Content-Length too
        small, a body on a HEAD answer or a 304, junk), all in one read: aiohttp's parser
        drops the response with the error. Relay it, as nginx does, and close the
        connection, whose framing can no longer be trusted. Only a response of known
        length is salvaged; anything else stays a 502."""
        stop = _first_response_end(data, self._skip_payload)
        if stop is None or self._params is None:
            return False
        is_head, read_timeout = self._params
        _response_params(self, "HEAD" if is_head else "GET", read_timeout)
        super().data_received(data[:stop])
        if self._exception is not None or not self._buffer:
            return False
        self._should_close = True
        self._params = None  # the next use (there is none: it closes) gets a new parser
        self.feed_eof()  # nothing more comes on this connection
        return True

    # A second descriptor for the socket while a request body streams (see `keep_spare`).
    _spare: socket.socket | None = None

    def keep_spare(self, spare: socket.socket | None) -> None:
        """Hold `spare`, a dup of this connection's socket, until the response is read.

        A write that fails with EPIPE or a reset makes the event loop close the socket at
        once, without reading what the upstream sent before it stopped reading (gunicorn
        answers an app that never reads the body, then closes with the body unread): the
        answer, or the rest of it, would be lost and the request become a 502. The spare
        descriptor keeps the socket, so `connection_lost` can still read it."""
        self.drop_spare()
        self._spare = spare

    def drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._spare is not None:
            if getattr(exc, "errno", None) in (errno.EPIPE, errno.ECONNRESET):
                left = _read_left(self._spare, _LEFT_LIMIT)
                if left and self._parser is not None:
                    # Parsed as if the loop had read it: a whole answer is relayed; a cut
                    # one still fails below (more than the limit is never a whole answer).
                    self.data_received(left)
            self.drop_spare()
        payload = self._payload
        if exc is not None and payload is not None and not payload.is_eof():
            # A body read until close ends at a clean close only. aiohttp's parser ends it
            # at a reset too, and the client would get a short body that looks complete
            # (a final chunk): fail it, so the client's connection is cut instead.
            payload.set_exception(
                ClientPayloadError(f"upstream connection lost mid-body: {exc!r}"), exc
            )
        super().connection_lost(exc)
        self._stop_timers()
        self._kick()

    def _stop_timers(self) -> None:
        """The connection is gone: its timers go now, not when they next fire."""
        self._read_deadline = None
        if self._read_timeout_handle is not None:
            self._read_timeout_handle.cancel()
            self._read_timeout_handle = None
        if self._total is not None:
            self._total.stop()

    def resume_reading(self, resume_parser: bool = True) -> None:
        # aiohttp calls this after every body read and at every body's end, and then feeds
        # its parser b"" to resume parsing held back by a pause. Not paused, nothing is held
        # back (no decompression here): skip it, it cost about a tenth of a small request.
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def _kick(self) -> None:
        notify = self._notify
        if notify is not None and (self._buffer or self._eof):
            self._notify = None
            self._loop.call_soon(notify)

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._drop_timeout()
            return
        at = self._read_deadline = self._loop.time() + timeout
        self._read_looked = False
        if self._read_timeout_handle is None or at < self._read_when:  # (a shorter timeout)
            self._arm_read_check(at)

    def _drop_timeout(self) -> None:
        self._read_deadline = None  # the timer finds nothing to time when it fires
        if self.transport is None:  # closed: let go of the timer (and this connection) now
            self._stop_timers()

    def _arm_read_check(self, at: float) -> None:
        if self._read_timeout_handle is not None:
            self._read_timeout_handle.cancel()
        self._read_when = at
        self._read_timeout_handle = self._loop.call_at(at, self._read_check)

    def _read_check(self) -> None:
        self._read_timeout_handle = None
        deadline = self._read_deadline
        if deadline is None:  # no read is being timed: the next one arms the timer again
            return
        now = self._loop.time()
        if now < deadline:  # data came meanwhile: wait on
            self._arm_read_check(deadline)
            return
        if not self._read_looked:  # what came while nobody looked is read first
            self._read_looked = True
            self._read_deadline = now + _LOOK
            self._arm_read_check(now + _LOOK)
            return
        self._on_read_timeout()

    def total_deadline(self, timeout: float) -> _Deadline:
        """The total timeout of the exchange starting now on this connection: `_expire` in
        `timeout` seconds unless the returned deadline is cancelled first."""
        total = self._total
        if total is None:
            total = self._total = _Deadline(self)
        return total.arm(timeout)

    def response_taken(self, message: Any) -> None:
        """What a response's head tells about the connection it came on."""
        self.forget_parser_if_chunked(message)
        hint = message.headers.get("Keep-Alive")
        self.keep_idle = None if hint is None else keep_alive_limit(hint)

    def forget_parser_if_chunked(self, message: Any) -> None:
        """A chunked response may end in trailer fields, and aiohttp's C parser (3.14) keeps
        the last one pending past the message's end: a parser used again would add it to
        the next response's headers (an upstream's `Set-Cookie` trailer reaching another
        client). The next response on this connection gets a new parser."""
        if message.chunked:
            self._params = None

    def expect_response(self, method: str, read_timeout: float | None) -> None:
        """Ready the parser for the response to a `method` request."""
        self._at_start = True
        self._payload = None  # the last exchange's, read to its end: `_answered` asks
        key = (method == "HEAD", read_timeout)
        if key != self._params or self._parser is None or self._upgraded:
            _response_params(self, method, read_timeout)
            self._params = key


class _Deadline:
    """A connection's total timeout (`_UpstreamProtocol.total_deadline`), one per
    connection, re-armed by each exchange on it, on one lazily checked timer. `cancel`
    as a `TimerHandle`'s; an exchange's deadline is cancelled before its connection is
    reused (`UpstreamResponse.release`) or when the connection is closed."""

    __slots__ = ("proto", "at", "when", "handle", "looked")

    def __init__(self, proto: _UpstreamProtocol) -> None:
        self.proto = proto
        self.at: float | None = None  # loop time the exchange under way times out
        self.when = 0.0  # when `handle` fires
        self.handle: asyncio.TimerHandle | None = None
        self.looked = False  # the deadline passed once and moved on for a look (`_LOOK`)

    def arm(self, timeout: float) -> _Deadline:
        loop = self.proto._loop  # noqa: SLF001
        at = self.at = loop.time() + timeout
        self.looked = False
        if self.handle is None or at < self.when:
            self._schedule(at)
        return self

    def _schedule(self, at: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.when = at
        self.handle = self.proto._loop.call_at(at, self._check)  # noqa: SLF001

    def cancel(self) -> None:
        self.at = None

    def stop(self) -> None:
        self.at = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _check(self) -> None:
        self.handle = None
        at = self.at
        if at is None:  # nothing under way: the next exchange arms the timer again
            return
        now = self.proto._loop.time()  # noqa: SLF001
        if now < at:  # an exchange started since
            self._schedule(at)
            return
        if not self.looked:  # what came while nobody looked is read first
            self.looked = True
            self.at = now + _LOOK
            self._schedule(now + _LOOK)
            return
        self.at = None
        if not _answered(self.proto):  # a whole answer in hand is relayed, not failed
            _expire(self.proto)


class Pending:
    """A request written on a pooled connection whose response has not been read yet.

    The fast lane's express path (`ProxyHandler.serve_express`) writes requests this way and is called
    back (`on_response`) instead of awaiting: when the response is complete in the buffer
    it is relayed without a task; otherwise `ConnectionPool.finish` reads it exactly as
    `ConnectionPool.request` would have.
    """

    __slots__ = ("proto", "method", "head", "body", "deadline")

    def __init__(
        self,
        proto: _UpstreamProtocol,
        method: str,
        head: bytes,
        body: bytes | None,
        deadline: _Deadline | None,
    ) -> None:
        self.proto = proto
        self.method = method
        self.head = head
        self.body = body
        self.deadline = deadline

    def on_response(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when a response, a failure or the end of the connection
        is in (at once if it already is)."""
        self.proto._notify = callback
        self.proto._kick()

    def complete(self) -> tuple[Any, StreamReader] | None:
        """The final response's message and body reader when the response is wholly in (a
        status of 200 or more, its body finished); None otherwise (an interim response, a
        body still arriving, a failure): then `finish` decides. Nothing is taken yet."""
        proto = self.proto
        if not proto._buffer or proto._exception is not None:  # noqa: SLF001
            return None
        (message, payload), _ = proto._buffer[0]  # noqa: SLF001
        if message.code < 200 or not payload.is_eof() or payload.exception() is not None:
            return None
        return message, payload

    def take(self, pool: ConnectionPool) -> UpstreamResponse:
        """The response `complete` showed, off the connection (as `finish` would return it)."""
        proto = self.proto
        (message, payload), _ = proto._buffer.popleft()  # noqa: SLF001
        proto.response_taken(message)
        return UpstreamResponse(
            message.code, message.reason, message.raw_headers, payload, proto, pool, self.deadline
        )

    def abandon(self) -> None:
        """The client went away before the response: close the connection, stop timers."""
        self.proto._notify = None
        if self.deadline is not None:
            self.deadline.cancel()
        self.proto.abort()


def keep_alive_limit(value: str) -> float | None:
    """How long a connection may idle in the pool by an upstream's `Keep-Alive: timeout=N`
    (RFC 2068 §19.7.1.1, sent by Node.js, Apache and others): a second less than N, as
    undici does, so that a request is not sent just as the upstream closes the connection
    (a POST then fails: it is not retried). None: no timeout given, `timeout.idle` rules."""
    for part in value.split(","):
        name, _, arg = part.partition("=")
        if name.strip().lower() == "timeout":
            arg = arg.strip().strip('"')
            # ASCII digits only: `isdigit` is true of `²` too, which int() refuses (a
            # ValueError in the express path's read callback left its client waiting).
            if arg.isascii() and arg.isdigit() and len(arg) <= 9:
                return max(0.0, int(arg) - 1.0)
            return None
    return None


class ConnectionPool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._idle: deque[tuple[_UpstreamProtocol, float]] = deque()
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if upstream.scheme == "https" else None
        )
        self._closed = False
        # The lookup of the upstream's host name under way, shared by the connects that
        # need it (None for an address, which needs none).
        self._numeric = _is_address(upstream.host)
        self._lookup: asyncio.Future[list[Any]] | None = None

    def put(self, proto: ResponseHandler) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE:
            proto.close()
            return
        self._idle.append((proto, time.monotonic()))

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    def _take(self) -> _UpstreamProtocol | None:
        now = time.monotonic()
        idle_limit = self.upstream.timeout.idle
        while self._idle:
            proto, since = self._idle.pop()
            limit = getattr(proto, "keep_idle", None)
            if limit is None or limit > idle_limit:
                limit = idle_limit
            if now - since < limit and proto.is_connected() and not proto.should_close:
                return proto
            proto.close()
        return None

    async def _connect(self) -> _UpstreamProtocol:
        loop = asyncio.get_running_loop()
        up = self.upstream
        resolving = not self._numeric
        try:
            async with asyncio.timeout(up.timeout.connect):
                hosts = [up.host] if self._numeric else await self._resolve(loop)
                resolving = False
                failure: OSError | None = None
                for host in hosts:  # each address in turn, as create_connection does
                    try:
                        _, proto = await loop.create_connection(
                            lambda: _UpstreamProtocol(loop),
                            host,
                            up.port,
                            ssl=self._ssl,
                            server_hostname=up.host if self._ssl else None,
                        )
                        return proto
                    except OSError as exc:
                        failure = exc
                assert failure is not None  # getaddrinfo returns an address or raises
                raise failure
        except TimeoutError as exc:
            what = f"resolving {up.host}" if resolving else f"connect to {up.host}:{up.port}"
            raise UpstreamTimeout(f"{what} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(f"connect to {up.host}:{up.port} failed: {exc}") from exc

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        """The upstream's addresses, from one lookup shared by every connect that needs it
        while it runs. A lookup cannot be cancelled (getaddrinfo runs in one of the event
        loop's few resolver threads): with a connect each, a resolver that stopped
        answering held every thread, and upstreams named otherwise waited too."""
        lookup = self._lookup
        if lookup is None:
            lookup = self._lookup = asyncio.ensure_future(
                loop.getaddrinfo(self.upstream.host, self.upstream.port, type=socket.SOCK_STREAM)
            )
            lookup.add_done_callback(self._looked_up)
        infos = await asyncio.shield(lookup)  # a connect that times out leaves it running
        return list(dict.fromkeys(info[4][0] for info in infos))

    def _looked_up(self, lookup: asyncio.Future[list[Any]]) -> None:
        if self._lookup is lookup:
            self._lookup = None  # the next connect looks the name up again (no caching)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every connect may have timed out before it

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        on_interim: Interim | None = None,
    ) -> UpstreamResponse:
        """Send one request; return once the status line and headers arrived.

        Interim responses (103 Early Hints, ...) are handed to `on_interim` as they come;
        `100 Continue` is not (the proxy answers `Expect` itself).

        `target` is the origin-form path and query, already encoded. A reused connection
        that the upstream closed just as it was picked is retried once on a fresh one, for
        idempotent methods whose body can be sent again (as browsers do); anything else
        gets the error, since the upstream may have acted on it.
        """
        if self._closed:
            raise ConnectFailed("the connection pool is closed")
        head = _request_head(method, target, headers, body)
        proto = self._take()
        if proto is not None:
            try:
                return await self._exchange(proto, method, head, body, on_interim)
            except _StaleConnection:
                _may_send_again(method, body)
        return await self._afresh(method, head, body, on_interim)

    async def _afresh(
        self,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes] | None,
        on_interim: Interim | None,
    ) -> UpstreamResponse:
        """The exchange on a new connection (nothing was sent before, or it may go again)."""
        proto = await self._connect()
        try:
            return await self._exchange(proto, method, head, body, on_interim)
        except _StaleConnection:
            raise UpstreamProtocolError(
                "the upstream closed the connection without answering"
            ) from None

    def begin(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes | None
    ) -> Pending | None:
        """Write a request on an idle kept-alive connection, without waiting for anything;
        None when no connection is idle (then `request` connects). `finish` reads the
        response as `request` would."""
        if self._closed:
            return None
        head = _request_head(method, target, headers, body)
        proto = self._take()
        if proto is None:
            return None
        transport = proto.transport
        if transport is None:  # closed as it was taken: `request` connects afresh
            proto.close()
            return None
        t = self.upstream.timeout
        proto.expect_response(method, t.read)
        deadline = None
        if t.total is not None:
            deadline = proto.total_deadline(t.total)
        _write_whole(transport, head, body)
        proto.start_timeout()  # the read timeout counts from the end of the request
        return Pending(proto, method, head, body, deadline)

    async def finish(self, pending: Pending, on_interim: Interim | None = None) -> UpstreamResponse:
        """The response to a request `begin` wrote (see `request` for the rules)."""
        try:
            return await self._receive(pending.proto, pending.deadline, on_interim)
        except _StaleConnection:
            _may_send_again(pending.method, pending.body)
        return await self._afresh(pending.method, pending.head, pending.body, on_interim)

    async def _exchange(
        self,
        proto: _UpstreamProtocol,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes] | None,
        on_interim: Interim | None,
    ) -> UpstreamResponse:
        up = self.upstream
        t = up.timeout
        proto.expect_response(method, t.read)
        whole = body is None or isinstance(body, bytes)
        deadline = None
        if t.total is not None and whole:
            deadline = proto.total_deadline(t.total)
        transport = proto.transport
        try:
            if transport is None:
                raise _StaleConnection()
            if body is None or isinstance(body, bytes):
                _write_whole(transport, head, body)
            else:
                if self._ssl is None:
                    proto.keep_spare(_spare_socket(transport))
                transport.write(head)
                try:
                    await _send_stream(
                        proto,
                        body,
                        chunked=b"transfer-encoding: chunked" in head.lower(),
                        stall=t.read or t.total,
                    )
                except _AnsweredEarly:
                    # A final answer while the body was still going (a 401 or a 413 from a
                    # server that reads no further): it is the response (RFC 9112 §9.6);
                    # the rest of the body is not sent, so the connection is not reused.
                    proto.force_close()
                except _StaleConnection:
                    # The upstream stopped reading: it may have answered early (a 413, a
                    # 404 or a 200 from an app that never reads bodies, then a close, as
                    # gunicorn does). That answer, read from the spare descriptor when the
                    # connection was lost, is the response; only when none arrived does
                    # the read below fail as before.
                    proto.force_close()
            if proto.transport is not None:
                proto.start_timeout()  # the read timeout counts from the end of the request
            if t.total is not None and not whole:
                # As Envoy's route timeout: from the end of the request, so an upload that
                # takes longer than `total` is not cut (stalls are: see `_send_stream`).
                deadline = proto.total_deadline(t.total)
        except BaseException:
            if deadline is not None:
                deadline.cancel()
            proto.abort()
            raise
        return await self._receive(proto, deadline, on_interim)

    async def _receive(
        self,
        proto: ResponseHandler,
        deadline: _Deadline | None,
        on_interim: Interim | None,
    ) -> UpstreamResponse:
        """Read up to the final response's head: interim responses relayed, failures mapped."""
        up = self.upstream
        try:
            while True:
                try:
                    message, payload = await proto.read()
                except Exception as exc:  # noqa: BLE001 - mapped to a proxy error below
                    if isinstance(exc, TimeoutError) or getattr(proto, "_timed_out", False):
                        raise UpstreamTimeout(f"upstream {up.name} timed out") from exc
                    if _no_response_yet(exc):
                        raise _StaleConnection() from exc
                    raise UpstreamProtocolError(_reason(exc)) from exc
                if 100 <= message.code < 200 and message.code != 101:
                    if message.code != 100 and on_interim is not None:
                        await on_interim(message.code, message.reason, message.raw_headers)
                    if not proto._buffer and proto.transport is not None:  # noqa: SLF001
                        # aiohttp stops the read timeout at every message without a body,
                        # an interim one too: the wait for the final answer is timed again
                        # (from the interim answer), or an upstream that sends 103 and
                        # stalls holds the request forever when `total` is off.
                        proto.start_timeout()
                    continue
                if isinstance(proto, _UpstreamProtocol):
                    proto.response_taken(message)
                break
        except BaseException:
            if deadline is not None:
                deadline.cancel()
            proto.abort()
            raise
        return UpstreamResponse(
            message.code,
            message.reason,
            message.raw_headers,
            payload,
            proto,
            self,
            deadline,
        )

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            proto, _ = self._idle.pop()
            proto.close()


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})")
_LENGTH_FIELD = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]+)[ \t]*(?=\r\n)", re.IGNORECASE)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _first_response_end(data: bytes, head_only: bool) -> int | None:
    """Where the first final response in `data` ends, when its length is known from its
    head alone (no body for HEAD, 204 and 304; one Content-Length and no
    Transfer-Encoding otherwise) and all of it is in `data`; else None. Interim (1xx)
    responses before it are included."""
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        status = _STATUS_LINE.match(data, start)
        if end < 0 or status is None:
            return None
        code = int(status.group(1))
        head = data[start : end + 2]
        start = end + 4
        if not (100 <= code < 200 and code != 101):
            break
    if head_only or code in (204, 304):
        return start
    if b"transfer-encoding" in head.lower():
        return None
    lengths = _LENGTH_FIELD.findall(head)
    if len(lengths) != 1:
        return None
    stop = start + int(lengths[0])
    return stop if stop <= len(data) else None


def _response_params(proto: ResponseHandler, method: str, read_timeout: float | None) -> None:
    proto.set_response_params(
        skip_payload=method == "HEAD",
        read_until_eof=True,  # a response with neither length nor chunking ends at close
        auto_decompress=False,  # compression passes through untouched
        read_timeout=read_timeout,
        read_bufsize=READ_BUFSIZE,
        max_line_size=16384,
        max_field_size=16384,
        max_headers=256,
    )


def _spare_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A second descriptor for the upstream socket, so an early answer outlives EPIPE."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        return socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:
        return None


# More than this left unread is not an early answer: it is never passed off as one.
_LEFT_LIMIT = 4 * 1024 * 1024


def _read_left(spare: socket.socket, limit: int) -> bytes:
    """What the upstream sent that the event loop never read (it stops on a write error)."""
    parts: list[bytes] = []
    size = 0
    spare.setblocking(False)
    while size < limit:
        try:
            piece = spare.recv(READ_BUFSIZE)
        except OSError:  # nothing more queued (EAGAIN), or the reset after the data
            break
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


def _write_whole(transport: asyncio.WriteTransport, head: bytes, body: bytes | None) -> None:
    """A request whose body is in hand: one write when it is small (every syscall counts)."""
    if not body:
        transport.write(head)
    elif len(body) < 65536:
        transport.write(head + body)
    else:
        transport.write(head)
        transport.write(body)


def _may_send_again(method: str, body: object) -> None:
    """A kept-alive connection failed before any answer: the request goes again on a fresh
    one only when it is idempotent and its body can be sent twice (as browsers do);
    anything else gets the error, since the upstream may have acted on it."""
    if method not in IDEMPOTENT_METHODS or not (body is None or isinstance(body, bytes)):
        raise UpstreamProtocolError(
            "the upstream closed a kept-alive connection before answering"
        ) from None


_QUOTED_BYTES = re.compile(r"""[:\s]*b['"]""")


def _reason(exc: BaseException) -> str:
    """What was wrong with an answer, without the bytes aiohttp's parser quotes after it
    (up to a whole body, anything the upstream sent): this text reaches the client's 502."""
    text = str(getattr(exc, "message", None) or exc)
    text = " ".join(_QUOTED_BYTES.split(text, maxsplit=1)[0].split())
    return text[:160] or exc.__class__.__name__


class _StaleConnection(Exception):
    """A connection failed before any byte of a response arrived."""


def _no_response_yet(exc: BaseException) -> bool:
    """The connection ended before an answer began: a close, or a reset (uvicorn's close of
    a connection with a request unread is one). aiohttp's protocol re-raises a reset or a
    broken pipe as its own `ClientOSError`, with the errno kept, so the errno decides."""
    from aiohttp import ServerDisconnectedError

    if isinstance(exc, ServerDisconnectedError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


def _answered(proto: ResponseHandler) -> bool:
    """Whether the answer to the exchange under way is all in (its head parsed, its body
    to the end), waiting only for the handler to take it."""
    payload = proto._payload  # noqa: SLF001 - None until this exchange's head is parsed
    return payload is not None and payload.is_eof() and payload.exception() is None


def _expire(proto: ResponseHandler) -> None:
    """The total timeout fired: fail whatever is waiting on this connection."""
    proto._timed_out = True  # type: ignore[attr-defined]
    proto.set_exception(UpstreamTimeout("total timeout exceeded"))
    if proto._payload is not None:  # noqa: SLF001 - a body being relayed must fail too
        proto._payload.set_exception(UpstreamTimeout("total timeout exceeded"))
    proto.abort()


def _request_head(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | AsyncIterator[bytes] | None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]  # each line without its CR LF
    has_length = False
    for name, value in headers:
        if ":" in name:
            raise ValueError(f"refusing to send header {name!r}: ':' in its name")
        lname = name.lower()
        if lname == "content-length":
            if has_length:
                continue
            has_length = True
            if isinstance(body, bytes):  # where the client put it, from the bytes sent
                value = str(len(body))
        elif lname == "transfer-encoding":
            continue  # hop-by-hop; framing is ours to choose
        lines.append(f"{name}: {value}")
    if isinstance(body, bytes):
        if not has_length and (body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")):
            lines.append(f"Content-Length: {len(body)}")
    elif body is not None and not has_length:
        lines.append("Transfer-Encoding: chunked")
    # No CR or LF in any line (a value with a line break would smuggle a header): two
    # searches of the lines joined, which run at memchr's speed, where counting both in
    # the head went through it character by character (and cost four times as much).
    joined = "".join(lines)
    if "\n" in joined or "\r" in joined:
        bad = next(line for line in lines if "\n" in line or "\r" in line) + "\r\n"
        raise ValueError(f"refusing to send {bad[:80]!r}: CR or LF inside it")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1")


async def _send_stream(
    proto: ResponseHandler, body: AsyncIterator[bytes], *, chunked: bool, stall: float | None
) -> None:
    """Write a streamed body, respecting the transport's flow control; an upstream that
    takes none of it for `stall` seconds times out (the client's own pauses are bounded
    by `limits.idle_timeout` where the body is read)."""
    transport = proto.transport
    async for chunk in body:
        if not chunk:
            continue
        if transport is None or transport.is_closing() or proto.transport is None:
            raise _StaleConnection()
        if chunked:
            transport.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        else:
            transport.write(chunk)
        if proto.writing_paused:
            try:
                async with asyncio.timeout(stall):
                    if await _drained_or_answered(proto):
                        raise _AnsweredEarly()
            except ConnectionError as exc:  # the upstream went away while we were writing
                raise _StaleConnection() from exc
            except TimeoutError:
                raise UpstreamTimeout(
                    f"the upstream took none of the request body for {stall:g} s"
                ) from None
    if chunked and transport is not None and not transport.is_closing():
        transport.write(b"0\r\n\r\n")


class _AnsweredEarly(Exception):
    """The upstream gave its final answer before it took the whole request body."""


def _final_answer_in(proto: ResponseHandler) -> bool:
    return any(
        message.code >= 200
        for (message, _), _size in proto._buffer  # noqa: SLF001 - the parsed responses
    )


def _resolver(future: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    return resolve


async def _drained_or_answered(proto: _UpstreamProtocol) -> bool:
    """Wait until the upstream takes more of the body (False), or answers instead (True):
    a server that refuses an upload and stops reading would otherwise hold it until the
    read timeout, though its answer is already here. Interim answers (100, 103) do not
    count: the wait goes on for what follows them."""
    loop = proto._loop  # noqa: SLF001
    drained = loop.create_task(proto._drain_helper())  # noqa: SLF001 - aiohttp's flow control
    try:
        while not _final_answer_in(proto):
            answered: asyncio.Future[None] = loop.create_future()
            proto._notify = _resolver(answered)  # noqa: SLF001 - at the upstream's next bytes
            await asyncio.wait((drained, answered), return_when=asyncio.FIRST_COMPLETED)
            if drained.done() and not _final_answer_in(proto):
                drained.result()  # raises ConnectionError when the upstream went away
                return False
        return True
    finally:
        proto._notify = None  # noqa: SLF001
        if drained.done():
            if not drained.cancelled():
                drained.exception()  # retrieved: an answer came as the connection went
        else:
            drained.cancel()
