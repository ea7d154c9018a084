"""The listener: client connections, with a fast lane for plain requests.

Most requests a strangler proxy carries are plain: no body or a small one with a
Content-Length, no upgrade, no expectation. Those are served here, straight from the
transport: aiohttp's web server (a request and a response object, a payload writer and a
task per connection) cost about a fifth of such a request's CPU (profiled;
bench/RESULTS.md). Everything else (chunked or large bodies, upgrades, `Expect`, anything
the edge or the parser refuses) is handed, with the connection and every byte not yet
answered, to aiohttp's server, which then owns that connection; it is the lane the
conformance suite was built on.

Heads are parsed by aiohttp's own C (llhttp) parser with the listener's limits, so both
lanes accept exactly the same bytes, and a head either parser dislikes is answered by
the aiohttp lane, with the same refusal it always gave (tests/proxy/test_fast_lane.py
holds the two lanes to the same bytes on the wire). One refusal of llhttp's is undone
first: a version `HTTP/1.2` to `HTTP/1.9` is read as HTTP/1.1 (`_read_as_http11`).

A connection that ends after an answer while the client may still be sending (pipelined
requests behind `Connection: close`, a 408, the server stopping) is not closed outright
but handed to `proxy.linger` (a lingering close), so the client's further bytes do not
turn the close into a reset that costs it the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import HttpVersion10, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http_exceptions import BadStatusLine
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.tcp_helpers import tcp_keepalive

from proxy.client import Interim, UpstreamResponse
from proxy.config.model import Limits
from proxy.edge import newer_minor
from proxy.errors import error_response
from proxy.filters.headers import peer_address, request_id, says_close
from proxy.forward import BodyCapture, ClientGone, small_body
from proxy.http1 import (
    CHUNKED,
    EMPTY,
    HOP_BY_HOP_BYTES,
    ResponseHead,
    connection_listed,
    response_head,
    serialize,
)
from proxy.linger import Lingering, unread_bytes

log = logging.getLogger("strangler.listener")

_HEAD_LIMIT = 64 * 1024  # no complete head within this many bytes: the aiohttp lane decides
_READ_AHEAD = 256 * 1024  # pipelined bytes buffered while a request is answered


class Listener:
    """The protocol factory for the proxy port (see the module docstring)."""

    def __init__(
        self,
        handler: Any,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits,
        *,
        fast_lane: bool = True,
        express: bool = True,
        lingering: Lingering | None = None,
    ) -> None:
        self.handler = handler  # proxy.handler.ProxyHandler
        self.fallback = fallback
        # Connections closed while the client may still be sending (`proxy.linger`).
        self.lingering = lingering if lingering is not None else Lingering()
        self.fast_lane = fast_lane
        self.express = express  # the fast lane answers from callbacks when it can
        self.idle_timeout = limits.idle_timeout
        self.max_head = limits.max_header_total  # longer heads: the aiohttp lane answers 431
        self.parser_limits = {
            "max_line_size": limits.max_request_line,
            "max_field_size": limits.max_header_size,
            "max_headers": limits.max_headers,
        }
        self.connections: set[EdgeConnection] = set()
        self.closing = False
        self.fast_requests = 0  # requests served on the fast lane
        self.handed_off = 0  # connections handed to the aiohttp lane
        self.escalated = 0  # fast-lane requests that began express and went on as a task

    def lanes(self) -> dict[str, int]:
        """For `GET /-/ready`: how much traffic takes which lane (this worker, since start)."""
        return {
            "fast_requests": self.fast_requests,
            "escalated_requests": self.escalated,
            "handed_off_connections": self.handed_off,
            # Lingering closes (`proxy.linger`, both lanes): begun, and lingering now.
            "lingering_closes": self.lingering.started,
            "lingering_connections": len(self.lingering.connections),
        }

    def __call__(self) -> asyncio.Protocol:
        if not self.fast_lane:
            self.handed_off += 1
            return self.fallback()
        return EdgeConnection(self)

    async def shutdown(self, grace: float) -> None:
        """Close idle connections now, let requests in flight finish within `grace`, and
        their answers reach the client: a handler is done when its last bytes are queued,
        not sent, and a slow reader still has them to take."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.closing = True
        for conn in list(self.connections):
            conn.close_when_done()
        busy = [w for w in (c.busy_waiter() for c in self.connections) if w is not None]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        await flushed([c.transport for c in self.connections], deadline)
        for conn in list(self.connections):
            conn.abort()


async def flushed(transports: list[Any], deadline: float, every: float = 0.02) -> None:
    """Until what the transports have queued is written (or `deadline`, loop time)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            if not any(t.get_write_buffer_size() for t in transports if t is not None):
                return
        except (AttributeError, RuntimeError):  # a transport already gone
            return
        await asyncio.sleep(every)


class _Starting:
    """`EdgeConnection.express` while an express request waits for its turn in the loop."""

    def cancel(self) -> None:
        return None


_STARTING = _Starting()


class EdgeConnection(asyncio.Protocol):
    """One client connection on the fast lane, until it is handed to the aiohttp lane."""

    __slots__ = (
        "listener",
        "transport",
        "peer",
        "task",
        "express",
        "_waiter",
        "_loop",
        "_buf",
        "_pos",
        "_fed",
        "_waiting",
        "_parser",
        "_idle",
        "_idle_since",
        "_drain",
        "_write_paused",
        "_read_paused",
        "_lost",
        "_version",
        "_method",
        "_accept",
        "_keep_alive",
        "_asked_close",
        "_work",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: Any = None
        self.peer = ""
        self.task: asyncio.Task[None] | None = None
        self.express: Any = None  # a request on the express path, awaiting its upstream
        self._waiter: asyncio.Future[None] | None = None  # shutdown waits on express work
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()  # appended to in place: a head trickling in costs O(n)
        self._pos = 0  # where the next request starts in _buf
        self._fed = 0  # how far into _buf the parser has read
        self._waiting: tuple[Any, Any, int, int] | None = None  # a head awaiting its body
        self._parser: Any = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None  # loop time the wait for a request began
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._lost = False
        self._version: tuple[int, int] = (1, 1)
        self._method = "GET"
        self._accept: str | None = None
        self._keep_alive = True
        self._asked_close = False  # the request being answered said it is the last
        self._work: Coroutine[Any, Any, None] | None = None  # what self.task runs

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = peer_address(transport.get_extra_info("peername"))
        tcp_keepalive(transport)
        self._parser = self._new_parser()
        self.listener.connections.add(self)
        self._arm_idle()

    def _new_parser(self) -> Any:
        return HttpRequestParser(
            self, self._loop, 2**16, **self.listener.parser_limits, auto_decompress=False
        )

    def data_received(self, data: bytes) -> None:
        if self._pos:  # drop what was answered, once per read rather than per request
            del self._buf[: self._pos]
            self._fed = max(0, self._fed - self._pos)
            self._pos = 0
        if self._idle_since is not None and (self._waiting is not None or not self._buf):
            # The first bytes of a request, or more of a body: the clock starts again, so a
            # long idle keep-alive does not count against the request that ends it. A head
            # still has to complete within the timeout of its first byte (slowloris).
            self._idle_since = None
        self._buf += data
        if self.task is None and self.express is None:
            self._next()
        elif len(self._buf) - self._pos > _READ_AHEAD and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> None:
        return None  # close, as aiohttp's server does; a request in flight is cancelled

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self.listener.connections.discard(self)
        self._stop_idle()
        if self.task is not None:
            self.task.cancel()  # the client went away: release the upstream
            # A task cancelled before its first step never runs `_serve`, so the work it was
            # given is never awaited: closed here, it is not reported (RuntimeWarning).
            work = self._work
            if work is not None:
                self.task.add_done_callback(lambda _: work.close())
        if self.express is not None:
            express, self.express = self.express, None
            express.cancel()
            self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ClientGone("client connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- requests ------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next request in the buffer, or hand the connection over."""
        if self.task is not None or self.express is not None:
            return  # one request at a time; this one's end comes back here
        if self._waiting is not None:  # a head is in; its body is still arriving
            msg, pre, head_len, body_len = self._waiting
            if len(self._buf) - self._pos >= head_len + body_len:
                self._waiting = None
                self._start(msg, pre, head_len, body_len)
            else:
                self._arm_idle()
            return
        # Pipelined requests are read from an offset: slicing the buffer per request would
        # make a long pipeline cost quadratic time.
        buf, pos, seen = self._buf, self._pos, self._fed
        if pos >= len(buf):  # nothing more to read (the usual case after an answer)
            self._arm_idle()
            return
        # Only bytes not seen yet are searched (a head sent a byte at a time stays linear).
        end = buf.find(b"\r\n\r\n", max(pos, seen - 3))
        head_end = end + 4 if end >= 0 else len(buf)
        # The parser sees each byte of the head once, as it arrives, so a request line it
        # rejects (garbage, TLS on the HTTP port) is answered at once, as aiohttp would,
        # not after the idle timeout. It never sees past the head.
        messages: Any = ()
        upgraded, tail = False, b""
        if head_end > seen:
            try:
                messages, upgraded, tail = self._parser.feed_data(buf[max(seen, pos) : head_end])
            except Exception as exc:  # noqa: BLE001 - the aiohttp lane parses again and answers 400
                if isinstance(exc, BadStatusLine) and self._read_as_http11():
                    self._next()  # the same head, parsed again
                    return
                self._hand_off()
                return
            self._fed = head_end
        if end < 0:
            bare_lf = buf.find(b"\n\n", max(pos, seen - 1)) >= 0
            if messages or len(buf) - pos > _HEAD_LIMIT or bare_lf:
                self._hand_off()  # a huge head, or bare-LF line ends: not for this lane
            else:
                self._arm_idle()
            return
        if len(messages) != 1 or upgraded or tail or head_end - pos > self.listener.max_head:
            self._hand_off()
            return
        msg, payload = messages[0]
        try:
            pre = self.listener.handler.preflight(msg, self.peer)
        except Exception:  # a bug must not take the connection down: the other lane answers
            log.exception("fast lane: preflight failed; handing the connection to aiohttp")
            pre = None
        body_len = pre.content_length or 0 if pre is not None else 0
        if pre is None or (payload is not EMPTY_PAYLOAD) != (body_len > 0):
            self._hand_off()
            return
        if body_len:
            # The parser now expects the body, which is taken from the buffer as bytes:
            # the next request gets a parser of its own.
            self._parser = self._new_parser()
            self._fed = head_end + body_len
        head_len = head_end - pos
        if len(buf) - pos < head_len + body_len:
            self._waiting = (msg, pre, head_len, body_len)
            self._arm_idle()
            return
        self._start(msg, pre, head_len, body_len)

    def _read_as_http11(self) -> bool:
        """Whether the head the parser refused says `HTTP/1.2` to `HTTP/1.9`: its version is
        then made `HTTP/1.1` in the buffer (`proxy.edge.newer_minor`) for a fresh parser to
        read again (and the aiohttp lane, if the connection goes there). Only ever run on a
        refusal: the hot path pays nothing."""
        digit = newer_minor(self._buf, self._pos, len(self._buf))
        if digit < 0:
            return False
        self._buf[digit] = 0x31  # "1"
        self._parser = self._new_parser()
        self._fed = self._pos
        return True

    def _start(self, msg: Any, pre: Any, head_len: int, body_len: int) -> None:
        """Run one request whose head and body (`body_len` bytes) are in the buffer."""
        self._cancel_idle()
        pos = self._pos
        request_end = pos + head_len + body_len
        body = bytes(self._buf[pos + head_len : request_end]) if body_len else b""
        if request_end == len(self._buf):
            self._buf, self._pos, self._fed = bytearray(), 0, 0
        else:
            self._pos = request_end
        self._version = (msg.version.major, msg.version.minor)
        self._method = msg.method
        self._accept = msg.headers.get("Accept")
        if msg.should_close or (msg.version == HttpVersion10 and says_close(msg.headers)):
            # The client's last request: set only here (none follows it). llhttp misses an
            # HTTP/1.0 `close` said next to `keep-alive` (`says_close`).
            self._keep_alive, self._asked_close = False, True
        else:
            self._keep_alive = not self.listener.closing
        self.listener.fast_requests += 1
        handler = self.listener.handler
        if self.listener.express:
            # Started from the loop, not from this read: every request that arrived in one
            # loop iteration is parsed before any is sent on (as tasks would run). Sending
            # from inside each read wakes the upstream once per request mid-batch, which cost
            # more CPU per request under load than the task it saves (bench/RESULTS.md).
            self.express = _STARTING
            self._loop.call_soon(self._express_start, msg, pre, body)
            return
        self._spawn(handler.serve_plain(self, msg, pre, body))

    def _express_start(self, msg: Any, pre: Any, body: bytes) -> None:
        if self.express is not _STARTING:
            return  # the client went away meanwhile
        self.express = None
        handler = self.listener.handler
        if not handler.serve_express(self, msg, pre, body):
            self._spawn(handler.serve_plain(self, msg, pre, body))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._work = work
        self.task = self._loop.create_task(self._serve(work))

    async def _serve(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            if self._write_paused and not self._lost:
                # The next request waits until the client reads this answer: a client that
                # pipelines and never reads must not fill the proxy's memory with answers.
                await self._drained()
        except ConnectionResetError:
            pass  # the client went away meanwhile
        except Exception:  # noqa: BLE001 - a response was under way: cut the connection
            log.exception("fast lane: request failed after its response began")
            self.abort()
        finally:
            self.task = self._work = None
        self._wake()
        self._after()

    def _after(self) -> None:
        """A response is sent: close, or go on to the next request."""
        if self._lost:
            return
        if not self._keep_alive or self.listener.closing:
            self._close_after_answer()
            return
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        self._next()

    # -- the express path (`ProxyHandler.serve_express`) ---------------------------------------

    def express_pending(self, request: Any) -> None:
        self.express = request

    def express_done(self) -> None:
        """The express request was answered: on to the next, once the client reads."""
        self.express = None
        if self._write_paused and not self._lost:
            self._spawn(self._drained())
            return
        self._wake()
        self._after()

    def escalate(self, work: Coroutine[Any, Any, None]) -> None:
        """The express request goes on as a task (`_serve`), as a fast-lane request does."""
        self.express = None
        self.listener.escalated += 1
        self._spawn(work)

    def busy_waiter(self) -> asyncio.Future[None] | None:
        """For shutdown: what to wait on while a request is in flight here."""
        if self.task is not None:
            return self.task
        if self.express is None:
            return None
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        return self._waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _hand_off(self) -> None:
        """Give the connection, and what was read of it, to the aiohttp lane."""
        self._stop_idle()
        self.listener.connections.discard(self)
        self.listener.handed_off += 1
        transport, data = self.transport, bytes(self._buf[self._pos :])
        self._buf, self._pos = bytearray(), 0
        proto = self.listener.fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        if data:
            proto.data_received(data)

    # -- idle connections ----------------------------------------------------------------------

    # Three waits, one clock: for the first byte of a request (keep-alive), for the rest of
    # its head (restarted by that first byte, not by the bytes that follow it: a slowloris
    # trickles its head), and between two reads of a small body (nginx's
    # `client_body_timeout`, as the aiohttp lane does for the bodies it streams). One timer
    # per connection, checked lazily: setting and cancelling a timer for every request cost
    # more than the check when it fires.

    def _arm_idle(self) -> None:
        if self._idle_since is None and not self._lost:
            self._idle_since = self._loop.time()
            if self._idle is None:
                self._idle = self._loop.call_later(self.listener.idle_timeout, self._idle_check)

    def _cancel_idle(self) -> None:
        self._idle_since = None

    def _stop_idle(self) -> None:
        """For good (the connection is gone or handed over): the timer must not keep it."""
        self._idle_since = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_check(self) -> None:
        self._idle = None
        since = self._idle_since
        if since is None or self._lost:
            return  # busy now: the next wait arms the timer again
        left = since + self.listener.idle_timeout - self._loop.time()
        if left > 0:
            self._idle = self._loop.call_later(left, self._idle_check)
            return
        if self.task is not None or self.express is not None:
            return
        if self._waiting is not None:
            self._body_timed_out()
            return
        # No complete head within the idle timeout (a slowloris trickles its head): close.
        self.transport.close()

    def _body_timed_out(self) -> None:
        """A head is in and its body stopped arriving: 408 and close, as the aiohttp lane
        answers a streamed body that stalls."""
        assert self._waiting is not None
        msg, pre, _, _ = self._waiting
        self._waiting = None
        self._version = (msg.version.major, msg.version.minor)
        self._method = msg.method
        self._keep_alive = self._asked_close = False
        timeout = self.listener.idle_timeout
        route = pre.match.route if pre.match is not None else None
        rid = request_id(msg.headers.get("X-Request-ID"))
        answer = error_response(
            408,
            f"the client sent no request body bytes for {timeout:g} s (limits.idle_timeout)",
            route=route.name if route is not None else None,
            request_id=rid,
            accept=msg.headers.get("Accept"),
            close=True,
        )
        self.send_response(answer)
        self.listener.handler.refused(
            408,
            "client body timeout",
            self.peer,
            len(answer.body) if isinstance(answer.body, bytes) else 0,
            route=route,
            method=msg.method,
            request_id=rid,
            path=pre.edge.path,
            query=pre.edge.query,
            duration_s=timeout,  # at least: the wait since the body's last bytes
        )
        self._close_after_answer()  # the rest of the body may still be on its way

    def _close_after_answer(self) -> None:
        """Close after the last answer: at once when the client asked for that, or the proxy
        is stopping, and it sent nothing more (it expects the close); otherwise with a lingering close
        (`proxy.linger`), as the client may still be sending and a plain close would answer
        its bytes with a reset, which can cost it the answer."""
        transport = self.transport
        # The client expects the close: it asked for it, or the proxy is stopping (its
        # answer said `Connection: close`; nginx closes such connections at once too).
        expected = self._asked_close or self.listener.lingering.deadline is not None
        if expected and self._pos >= len(self._buf) and not unread_bytes(transport):
            transport.close()
            return
        self._lost = True  # the connection is no longer this protocol's
        self._stop_idle()
        self.listener.connections.discard(self)
        self._buf, self._pos, self._fed, self._waiting = bytearray(), 0, 0, None
        self.listener.lingering.close(transport)

    def close_when_done(self) -> None:
        """Shutdown: close now when idle; otherwise after the response under way."""
        self._keep_alive = False
        if self.task is None and self.express is None and not self._lost:
            self.transport.close()

    # -- writing responses (`proxy.handler.PlainConnection`) ---------------------------------

    def abort(self) -> None:
        self._keep_alive = False
        if not self._lost:
            self.transport.abort()

    def send_response(self, resp: web.Response) -> None:
        """Write a response of the proxy's own (an error page) in one piece."""
        if self._lost or self.transport.is_closing():
            return
        data, self._keep_alive = serialize(
            self._version,
            self._method,
            resp.status,
            resp.reason,
            list(resp.headers.items()),
            resp.body if isinstance(resp.body, bytes) else b"",
            keep_alive=self._keep_alive and resp.keep_alive is not False,
            date=rfc822_formatted_time().encode(),
        )
        self.transport.write(data)

    def interim_relay(self) -> Interim | None:
        """Upstream 1xx responses, passed on to HTTP/1.1 clients (RFC 9110 §15.2)."""
        return self._relay_interim if self._version >= (1, 1) else None

    async def _relay_interim(
        self, status: int, reason: str, raw_headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        drop = HOP_BY_HOP_BYTES | connection_listed(raw_headers)
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("utf-8", "surrogateescape"))]
        lines += [k + b": " + v + b"\r\n" for k, v in raw_headers if k.lower() not in drop]
        lines.append(b"\r\n")
        self._write(b"".join(lines))

    async def relay(
        self,
        upstream_resp: UpstreamResponse,
        request_id: str,
        *,
        capture: BodyCapture | None,
        route: str | None,
        ex: Any = None,
    ) -> tuple[int, int]:
        """Relay an upstream response; returns the status sent and the body bytes sent.

        As `proxy.forward.relay` does for the aiohttp lane: a small body of known length is
        read whole and sent with its head in one write; anything else streams, chunked
        when its length is unknown. With `capture`, the body is also kept for shadow
        comparison. `ex` (`proxy.exchange.Exchange`): its `bytes_out` says what a streamed
        body handed to the transport even when the relay fails part-way.
        """
        whole = await small_body(
            upstream_resp, self._method, route=route, request_id=request_id, accept=self._accept
        )
        if isinstance(whole, web.Response):
            if capture is not None:
                capture.fail()
            self.send_response(whole)
            return whole.status, 0
        status = upstream_resp.status
        rid = request_id.encode("latin-1")
        if whole is not None:
            if capture is not None:
                capture.add(whole)
            self.send_whole(upstream_resp, whole, request_id)
            return status, len(whole)
        head = self._head(upstream_resp, rid)
        self._write(head.data)
        sent = 0
        chunked = head.framing == CHUNKED
        content = upstream_resp.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                if capture is not None:
                    capture.add(chunk)
                if chunked:
                    self._write_all((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    self._write(chunk)
                sent += len(chunk)
                if self._write_paused:
                    await self._drained()
            if chunked:
                self._write(b"0\r\n\r\n")
        finally:
            if ex is not None:  # cut short: the access line still says what went out
                ex.bytes_out = sent
        return status, sent

    def send_whole(self, upstream_resp: UpstreamResponse, body: bytes, request_id: str) -> None:
        """`relay` for a small body already in hand, without waiting (the express path)."""
        head = self._head(upstream_resp, request_id.encode("latin-1"))
        self._write(head.data + body if head.framing != EMPTY else head.data)

    def _head(self, upstream_resp: UpstreamResponse, request_id: bytes) -> ResponseHead:
        head = response_head(
            self._version,
            self._method,
            upstream_resp.status,
            upstream_resp.reason,
            upstream_resp.raw_headers,
            request_id,
            keep_alive=self._keep_alive,
            date=rfc822_formatted_time().encode(),
        )
        self._keep_alive = head.keep_alive
        return head

    def _write(self, data: bytes) -> None:
        if self._lost:
            raise ClientGone("client connection lost")
        self.transport.write(data)

    def _write_all(self, parts: Sequence[bytes]) -> None:
        if self._lost:
            raise ClientGone("client connection lost")
        self.transport.writelines(parts)

    async def _drained(self) -> None:
        if self._lost:
            raise ClientGone("client connection lost")
        self._drain = self._loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None
