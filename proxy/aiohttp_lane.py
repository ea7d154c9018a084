"""The aiohttp lane: aiohttp's low-level server, with the fixes a proxy's edge needs.

The fast lane (`proxy.listener`) serves plain requests itself and hands every other
connection (chunked or large bodies, upgrades, `Expect`, what it refuses) to this lane.
"""

from __future__ import annotations

import itertools
import logging
import re
from http import HTTPStatus
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from proxy.edge import HTTP1_PREFIX, NEWER_MINORS
from proxy.errors import parser_reason
from proxy.filters.headers import says_close
from proxy.linger import Lingering, unread_bytes

log = logging.getLogger("strangler")

# The end of a chunked body without trailer fields: the last chunk ("0", maybe with
# extensions), the empty line, and the line break before the last chunk in view.
_NO_TRAILERS = re.compile(rb"\r\n0+(?:;[^\r\n:\"]*)?\r\n\r\n\Z")
_NO_TRAILERS_AT_START = re.compile(rb"0+(?:;[^\r\n:\"]*)?\r\n\r\n\Z")
# How much of what was parsed before is kept for that check: a read is parsed in pieces
# cut at empty lines (and reads are cut anywhere), so a body whose data ends with CRLF (a
# multipart form) puts its last chunk at the start of a piece, with the line break before
# it at the end of the one before.
_TAIL = 256
_LINE_BREAK = b"\r\n"  # as ints: a byte of either
# Chunk-extension bytes a request body may carry in all (RFC 9112 §7.1.1: a server ought to
# limit them, as it limits header fields). llhttp skips them without bound, so a client
# could send gigabytes of `;x=...` that no body-size figure counts. Node.js and hyper
# allow 16 KiB too; mainstream clients send none.
MAX_CHUNK_EXTENSIONS = 16 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")  # what llhttp reads as one (RFC 9112 §7.1)


class EdgeRequestHandler(RequestHandler):
    """aiohttp's connection handler (the aiohttp lane) plus these fixes.

    * A read is parsed a head (or a body's end) at a time. When llhttp meets an error, the
      messages it parsed earlier in the same call are lost: a valid request pipelined
      before a malformed one, or before bytes sent after `Connection: close`, went
      unanswered, and the client paired the 400 with it. Now the valid request is
      answered first, as the fast lane does (RFC 9112 §9.3.2: answers in request order).
    * Trailer fields end the connection. aiohttp's C parser (3.14) keeps a chunked body's
      last trailer field pending past the end of the message and adds it to the next
      request it parses (one request's `Authorization` or `Host` on the next, another
      user's behind a load balancer). When a chunked body ends with trailers (or its end
      cannot be seen whole), nothing after it is parsed: its request is answered and the
      connection closed (`answers_last`). Bodies without trailers,
      nearly all, keep the connection.
    * A framing error inside a request body that is being streamed fails that body (the
      handler then answers 400 and closes). aiohttp's C parser only queues a 400 for
      *after* the current request, leaving the handler that streams the body upstream
      waiting for bytes that never come; and a body read after its answer (an upstream's
      early 413) got that 400 as a second answer, or a reset. See `_body_broken`.
    * Chunk extensions are bounded: past `MAX_CHUNK_EXTENSIONS` bytes in a body, that
      body fails (400) and nothing after it is parsed (llhttp skips them without limit).
    * `HTTP/1.2` to `HTTP/1.9`, which llhttp refuses, are read as HTTP/1.1 (RFC 9110
      §2.5), as the fast lane reads them: see `_measure_request_line`.

    And a connection that ends after an answer while the client may still be sending (it
    did not ask for the close, or sent more than was parsed) gets a lingering close
    (`proxy.linger`): see `_linger_on_close`.
    """

    __slots__ = (
        "_chunked_body",
        "_chunk_scan",
        "_body_fresh",
        "trailer_body",
        "_line_len",
        "_line_start",
        "_head_ended",
        "_tail",
        "_backlog",
        "_last_body",
        "_last_length",
        "_answered_body",
        "_dropped",
        "_refused",
        "_parse_failed",
        "_asked_close",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunked_body: Any = None  # the chunked body being parsed
        self._chunk_scan = ChunkScan()  # its chunk-extension bytes, counted
        self._body_fresh = False  # the next bytes parsed are its first
        self.trailer_body: Any = None  # a body that ended with trailers: nothing after it
        # The request line of the head being parsed, so far (-1: it ended, -2: it ended
        # over `max_line_size`; llhttp bounds only its target, so a line may end over it).
        self._line_len = 0
        self._line_start = b""  # its first bytes: enough to tell a HEAD request
        self._head_ended = False  # the last bytes parsed ended a head
        self._tail = b""  # the last bytes parsed (up to _TAIL), for the end-of-body check
        self._backlog = b""  # read but not yet given to the parser: it holds bytes of its own
        # The body of the request parsed last. Not the handler's view (`_messages`,
        # `_current_request`): a request leaves the queue a loop step before its handler
        # starts, and a read in between is no part of any request there.
        self._last_body: Any = None
        self._last_length: int | None = None  # its Content-Length (None: chunked, or none)
        # The body of the request whose answer is being written or was written last: its
        # handler reads no more of it (aiohttp may, to drop it).
        self._answered_body: Any = None
        self._dropped = False  # bytes arrived that nothing will parse (closing)
        self._refused = False  # the parser refused a request (400/414/431/505)
        self._parse_failed = False  # the parser met an error: nothing after it is a request
        self._asked_close = False  # the request answered last said it is the last

    def data_received(self, data: bytes) -> None:
        if self.trailer_body is not None or self._close or self._force_close:
            if data:
                self._dropped = True  # the client is still sending: see `_linger_on_close`
            if self.trailer_body is not None:
                return  # see the class docstring: nothing after trailer fields
        if not data:  # aiohttp resuming its paused parser (`resume_reading`)
            self._parse(data)  # what the parser kept of the last piece
            data, self._backlog = self._backlog, b""
        elif self._backlog:
            data, self._backlog = self._backlog + data, b""
        start, size = 0, len(data)
        while start < size and self.trailer_body is None:
            if self._parser_holding():
                # The parser stopped mid-piece and would keep whatever it is fed next, to
                # parse it later in one go: a body's end and what follows would no longer
                # be parsed a piece at a time. The rest waits here until it resumes.
                self._backlog = data[start:]
                return
            if self._upgraded or self._payload_parser is not None or self._close:
                # Not HTTP messages any more (or ignored): aiohttp keeps them (see
                # `finish_response`) or drops them. Not parsed, so no part of `_tail`.
                super().data_received(data[start:] if start else data)
                return
            end = data.find(b"\r\n\r\n", start)
            end = size if end < 0 else end + 4
            left = self._body_left()
            if 0 < left < end - start:
                end = start + left  # the body ends here: what follows is a head
            if start == 0 and self._tail:
                # An empty line begun at the end of the last read ends in this one:
                # cut after it (where a chunked body may end; see `_parse`).
                carry = self._tail[-3:]
                straddle = (carry + data[:3]).find(b"\r\n\r\n")
                if straddle >= 0:
                    end = straddle + 4 - len(carry)
            digit = self._measure_request_line(data, start, end)
            if digit >= 0:  # `HTTP/1.2` to `HTTP/1.9`, read as HTTP/1.1 (RFC 9110 §2.5)
                data = b"%s1%s" % (data[:digit], data[digit + 1 :])
            self._parse(data[start:end] if start or end < size else data)
            start = end

    def _parse(self, data: bytes) -> None:
        queued = len(self._messages)
        body = self._chunked_body
        if body is not None and data and self._chunk_scan.feed(data) > MAX_CHUNK_EXTENSIONS:
            self._extensions_too_long(body, queued)
            return
        fresh, self._body_fresh = self._body_fresh, False
        super().data_received(data)
        messages = self._messages
        body = self._chunked_body
        tail = self._tail
        if data:
            self._tail = data[-_TAIL:] if len(data) >= _TAIL else (tail + data)[-_TAIL:]
        if body is not None and body.is_eof():
            self._chunked_body = None
            # The body's last bytes, with those parsed just before them: "\r\n0\r\n\r\n"
            # ends a body without trailer fields, wherever the cut between reads fell.
            if not (
                _NO_TRAILERS.search(tail + data) or (fresh and _NO_TRAILERS_AT_START.match(data))
            ):
                self._trailers_seen(body, queued)
                return
        for index, (msg, payload) in enumerate(itertools.islice(messages, queued, None)):
            if not isinstance(msg, _ErrInfo):
                self._last_body, self._last_length = payload, _content_length(msg)
            if getattr(msg, "chunked", False):
                if payload.is_eof():
                    # Head and end of a chunked body parsed at once: where its end fell
                    # (trailers or not) cannot be seen. Should not happen (see
                    # `_parser_holding`); if it does, nothing after it is parsed.
                    self._trailers_seen(payload, queued + index + 1)
                    return
                self._chunked_body, self._body_fresh = payload, True
                self._chunk_scan = ChunkScan()
        if len(messages) > queued and isinstance(messages[-1][0], _ErrInfo):
            self._parse_failed = True
            error = messages[-1][0].exc
            if isinstance(error, LineTooLong):
                # Judged now, on the line just parsed: the answer is written later, when
                # more (a line of garbage behind it) may have been measured.
                error.refusal_status = 414 if self._line_too_long() else 431
            body = self._last_body  # cut short: the request being handled, or one queued
            if body is not None and not body.is_eof():
                self._body_broken(body, error, queued)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """An upgrade the handler declined (no 101): what came after its request is HTTP
        again. aiohttp feeds all of it to its parser in one go, past the trailer check
        (a trailer field pipelined behind a refused WebSocket handshake reached the next
        request); here it is parsed as any read is, a piece at a time."""
        # Its handler has returned: no more of its body is read but by aiohttp, to drop it.
        self._answered_body = request.content
        if (
            self._upgraded
            and not self._messages
            and self._payload_parser is None
            and self._parser is not None
        ):  # aiohttp's own condition for taking the upgrade back (`finish_response`)
            self._parser.set_upgraded(False)
            self._upgraded = False
            tail, self._message_tail = self._message_tail, b""
            if tail:
                self.data_received(tail)
            if self._buffer_paused and len(self._messages) < self._max_msg_queue_size:
                self._resume_reading_if_drained()  # the tail held reading off
        if resp is not None and self.answers_last(request):
            # Nothing after trailer fields is parsed: this answer is the connection's last
            # whoever made it. The proxy's handler says so itself (`answers_last`); an
            # application's (the admin API's) answered keep-alive, and the client's next
            # request waited, unread, for the keep-alive timeout.
            resp.force_close()
        answered = await super().finish_response(request, resp, start_time)
        if not resp.keep_alive or self._close or self._force_close:
            self._asked_close = not request.keep_alive and not self._refused
            if resp.status != 101:  # (a WebSocket session that ended is no HTTP any more)
                self._linger_on_close()
        return answered

    def _linger_on_close(self) -> None:
        """This connection ends after the answer under way: aiohttp's own `transport.close()`
        then gives it a lingering close, when the client may still be sending. Only such a
        connection pays for the stand-in transport (`_LingerOnClose`)."""
        transport = self.transport
        if transport is None or isinstance(transport, _LingerOnClose):
            return
        lingering = getattr(self._manager, "lingering", None)
        if lingering is not None:
            self.transport = _LingerOnClose(self, transport, lingering)

    def should_linger(self, transport: Any, *, stopping: bool = False) -> bool:
        """Whether the client may still be sending: it did not expect the close (trailer
        fields, a refusal; not when it asked for it, nor when the proxy is `stopping`: its
        answer said `Connection: close`), or sent more than was answered."""
        return (
            not (self._asked_close or stopping)
            or self._dropped
            or bool(self._messages or self._backlog or self._message_tail)
            or self._body_pending()
            or unread_bytes(transport) > 0
        )

    def _parser_holding(self) -> bool:
        """Whether aiohttp's parser paused (a body over its buffer's limit, or a full queue
        of requests) and so keeps the bytes it is given instead of parsing them."""
        return self._reading_paused or len(self._messages) >= self._max_msg_queue_size

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A client's malformed request is one line, not an ERROR with two tracebacks per
        bad request (cheap log flooding, alert noise, client bytes in unprefixed lines)."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # aiohttp names the peer only where it has a request ("Error handling request
            # from %s"); a body that broke under its own read of it comes without one.
            peer = args[1] if len(args) > 1 else _peer_of(self.transport)
            reason = parser_reason(exc)
            status = self._refusal_status(exc, exc.code)
            log.info("refused a malformed request from %s: %d %s", peer, status, reason)
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's answer without the bytes it quotes: they may be a secret header
        value (a token over the size limit), and the client has no use for an echo."""
        self._refused = True  # the client did not ask for the close that follows
        if isinstance(exc, HttpProcessingError) and status != 500:
            status = self._refusal_status(exc, status)
            message = f"{status} {_phrase(status)}: {parser_reason(exc)}\n"
        if request is not None:
            # aiohttp answers a request it could not parse as HTTP/1.0 (its stand-in for
            # the request has that version); a client of this HTTP/1.1 server reads 1.1.
            answer_in_http11(request)
            if self._line_start == b"HEAD ":
                # Its stand-in is no HEAD request either: the answer would carry a body,
                # which a client reading a HEAD response takes for the next response.
                _stand_in_for_head(request)
        manager = self._manager
        on_refused = getattr(manager.request_handler, "refused", None) if manager else None
        if on_refused is not None:
            reason = parser_reason(exc) if isinstance(exc, HttpProcessingError) else "error"
            sent = len(message.encode("utf-8", "replace")) if message else 0
            on_refused(status, reason, _peer_of(self.transport), sent)
        return super().handle_error(request, status, exc, message)

    def _measure_request_line(self, data: bytes, start: int, end: int) -> int:
        """Keep the length of the request line being parsed (`_refusal_status` needs it).
        Body bytes are no head: while a body is still arriving nothing is measured, and the
        head after it starts afresh. Bytes after a head the parser refused are no request (it
        is answered and the connection closed): its line stays the one measured, so a HEAD
        request's refusal has no body whatever was pipelined behind it.

        Returns the index in `data` of the minor digit of an `HTTP/1.2` to `HTTP/1.9`
        version ending the line in these bytes (or where they stop), which llhttp would
        refuse, for the caller to make it `1` before the parser sees it; -1 for any other
        (`proxy.edge.newer_minor` says why: the fast lane does the same on a refusal)."""
        if self._parse_failed:
            return -1
        if self._body_pending():
            self._head_ended = True
            return -1
        if self._head_ended:
            self._line_len, self._head_ended, self._line_start = 0, False, b""
        began_before = self._line_len > 0  # the line's first bytes were parsed before
        digit = -1
        line_from = start
        if self._line_len == 0:
            # Empty lines before a request line are no part of it (RFC 9112 §2.2; llhttp
            # skips them): `\r\nHEAD /` is a HEAD request, and its line is measured alone.
            while line_from < end and data[line_from] in _LINE_BREAK:
                line_from += 1
        if self._line_len >= 0 and line_from < end:
            if len(self._line_start) < 5:
                self._line_start += data[
                    line_from : min(end, line_from + 5 - len(self._line_start))
                ]
            newline = data.find(b"\n", line_from, end)
            self._line_len += (end if newline < 0 else newline) - line_from
            if newline >= 0:
                # Ended: what follows is header fields, where nothing is measured nor
                # rewritten (a field value may end in ` HTTP/1.2` too).
                self._line_len = -1 if self._line_len <= self.max_line_size else -2
            # The version's last byte, where the line ends here (or these bytes stop): one
            # byte compared per request line, and a few more for `HTTP/1.2` to `HTTP/1.9`.
            tip = (end if newline < 0 else newline) - 1
            if tip >= line_from and data[tip] == 13:  # CR
                tip -= 1
            if tip >= line_from and data[tip] in NEWER_MINORS:
                before = data[max(line_from, tip - len(HTTP1_PREFIX)) : tip]
                if began_before:
                    before = (self._tail + before)[-len(HTTP1_PREFIX) :]
                if before == HTTP1_PREFIX:
                    digit = tip
        # The empty line may have begun in the bytes parsed before (a read cut inside it).
        last = data[max(start, end - 4) : end]
        self._head_ended = (self._tail[-3:] + last)[-4:] == b"\r\n\r\n"
        return digit

    def _line_too_long(self) -> bool:
        return self._line_len > self.max_line_size or self._line_len == -2

    def _body_left(self) -> int:
        """Bytes of the Content-Length body being parsed still to come (0: none, or
        chunked: a chunked body's end is an empty line, where pieces are cut anyway)."""
        body, length = self._last_body, self._last_length
        if length is None or body is None or body.is_eof():
            return 0
        return length - body.total_bytes

    def _body_pending(self) -> bool:
        body = self._last_body
        return body is not None and not body.is_eof()

    def _refusal_status(self, exc: HttpProcessingError, status: int) -> int:
        """llhttp says 400 for every limit: a request line over `limits.max_request_line`
        is 414 and header fields over theirs are 431 (RFC 9110 §15.5.15, RFC 6585 §5), so
        a client can tell a long URL from a bad request."""
        if isinstance(exc, LineTooLong):
            pinned = getattr(exc, "refusal_status", None)  # see `_parse`
            if pinned is not None:
                return int(pinned)
            return 414 if self._line_too_long() else 431
        if str(exc.message).startswith("Too many headers"):
            return 431
        return status

    def answers_last(self, request: web.BaseRequest) -> bool:
        """Whether `request` is the last request this connection answers (its answer then
        says `Connection: close`): its body ended with trailer fields, or the connection
        is closing anyway (the server shutting down)."""
        return self._close or (
            self.trailer_body is not None and self.trailer_body is request.content
        )

    def _extensions_too_long(self, body: Any, queued: int) -> None:
        """`body` carried more chunk-extension bytes than `MAX_CHUNK_EXTENSIONS`: it fails
        as a body that breaks its framing does (`_body_broken`)."""
        self._chunked_body = None
        error = BadHttpMessage(
            f"chunk extensions over {MAX_CHUNK_EXTENSIONS} bytes in all (RFC 9112 section"
            " 7.1.1); send the chunked body without chunk extensions"
        )
        self._body_broken(body, error, queued)

    def _body_broken(self, body: Any, error: HttpProcessingError, queued: int) -> None:
        """`body` broke its framing while it was still arriving: its request is the
        connection's last, as after trailer fields (`_trailers_seen`), since nothing after
        it can be read as a request; and it gets one answer: the parser's own 400, queued
        behind it, is dropped.

        * Its handler has it (reading it, or yet to start): the body fails, so the
          handler answers 400 and cuts the upstream request.
        * It was answered already (an upstream's early 413, relayed while the body still
          came): that was its answer. aiohttp, reading the rest of the body to drop it,
          finds its end rather than the error, which cut the connection with a reset.

        Either way the body is ended, and the connection gets a lingering close after the
        answer: the client may still be sending, and a reset could cost it the answer."""
        log.info(
            "refused a malformed request body from %s: %s",
            _peer_of(self.transport),
            parser_reason(error),
        )
        if body is not self._answered_body:
            body.set_exception(error)  # readers get the error first, then the end
        body.feed_eof()
        self._trailers_seen(body, queued)

    def _trailers_seen(self, body: Any, queued: int) -> None:
        """`body` ended with trailer fields (or maybe did): parse nothing after it."""
        self.trailer_body = body
        while len(self._messages) > queued:  # parsed after it, with its trailer attached
            self._messages.pop()
        current = self._current_request
        handling = current is not None and current.content is body
        if not handling and all(payload is not body for _, payload in self._messages):
            # Its request was already answered: close now, lingering (the client may still
            # be sending the rest of it).
            self._linger_on_close()
            self.close()


class ChunkScan:
    """Counts the chunk-extension bytes of a chunked body as its bytes reach the parser.

    llhttp judges the framing; this only reads each chunk-size line (its size, to skip
    the chunk's data, and the bytes after its `;`) and stops at the last chunk, whose
    trailer fields the parser's header limits bound. A line it cannot read as llhttp
    would (no hex digits, a size over 64 bits) ends the count: llhttp refuses that body
    anyway. It reads sizes as llhttp does: hex digits only (`int()` also takes a sign,
    `0x` and `_`: `-6` moved the scan back onto its own line, for ever), and any number
    of leading zeros (they gave up the count, so the extensions after them went unbounded).
    """

    __slots__ = ("skip", "digits", "in_extension", "extensions", "done")

    def __init__(self) -> None:
        self.skip = 0  # bytes of chunk data (and its CRLF) still to pass over
        self.digits = b""  # the chunk-size line up to its `;` (or its end), so far
        self.in_extension = False  # past the `;` of the current chunk-size line
        self.extensions = 0  # chunk-extension bytes seen so far, `;` and CR included
        self.done = False  # the last chunk was reached (or the count gave up)

    def feed(self, data: bytes) -> int:
        """Scan the next bytes of the body; the chunk-extension bytes seen in all."""
        pos, size = 0, len(data)
        while pos < size and not self.done:
            if self.skip:
                step = min(self.skip, size - pos)
                self.skip -= step
                pos += step
                continue
            newline = data.find(b"\n", pos)
            end = size if newline < 0 else newline
            if self.in_extension:
                self.extensions += end - pos
            else:
                semicolon = data.find(b";", pos, end)
                if semicolon >= 0:
                    self.in_extension = True
                    self.extensions += end - semicolon
                self.digits += data[pos : end if semicolon < 0 else semicolon]
                if len(self.digits) > 32:
                    # Leading zeros are no part of the size, and llhttp takes any number.
                    self.digits = self.digits.lstrip(b"0") or b"0"
                    if len(self.digits) > 32:  # over 64 bits, or no size: llhttp refuses
                        self.done = True
                        break
            if newline < 0:
                break
            pos = newline + 1
            digits = self.digits[:-1] if self.digits.endswith(b"\r") else self.digits
            self.digits, self.in_extension = b"", False
            if not _CHUNK_SIZE.fullmatch(digits):  # llhttp refuses the body
                self.done = True
                break
            chunk = int(digits, 16)
            if chunk == 0:
                self.done = True
            else:
                self.skip = chunk + 2
        return self.extensions


def answer_in_http11(request: web.BaseRequest) -> None:
    """aiohttp writes a status line in the request's version: a 505 for `HTTP/2.0` or
    `HTTP/0.9` would begin `HTTP/2.0 505`, which no client reads as HTTP/1.x, and a request
    it could not parse is answered `HTTP/1.0`. A server answers in the version it speaks
    (RFC 9110 §6.2), as nginx does."""
    try:  # `version` is aiohttp's cached property over `_version`
        request._version = HttpVersion11  # noqa: SLF001
        request._cache.pop("version", None)  # noqa: SLF001
    except AttributeError:  # another aiohttp: the echoed version stays
        pass


def _stand_in_for_head(request: web.BaseRequest) -> None:
    try:  # `method` is aiohttp's cached property over `_method`
        request._method = "HEAD"  # noqa: SLF001
        request._cache.pop("method", None)  # noqa: SLF001
    except AttributeError:  # another aiohttp: the body is written (the connection closes)
        pass


def _content_length(msg: Any) -> int | None:
    if getattr(msg, "chunked", False):
        return None
    value = msg.headers.get("Content-Length")
    # llhttp refused a value over 2**64 already; the length check keeps int() cheap anyway.
    return int(value) if value is not None and value.isdigit() and len(value) < 21 else None


def _peer_of(transport: Any) -> str | None:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _LingerOnClose:
    """The transport of an aiohttp-lane connection that is about to end: aiohttp's own
    `close()` at the end of `RequestHandler.start` becomes a lingering close (the handler
    is detached, as when a connection is lost, and `proxy.linger` takes the transport).
    A forced close (the connection lost, the shutdown's cut, a request still running)
    stays a plain close. Everything else is the transport's own."""

    __slots__ = ("_handler", "_transport", "_lingering", "_since")

    def __init__(self, handler: EdgeRequestHandler, transport: Any, lingering: Lingering) -> None:
        self._handler = handler
        self._transport = transport
        self._lingering = lingering
        # The answer's end: aiohttp may first read a body the handler left unread (up to
        # its own `lingering_time`), and that time counts against `LINGER_TIME`.
        self._since = handler._loop.time()  # noqa: SLF001

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def close(self) -> None:
        handler, transport = self._handler, self._transport
        task = handler._task_handler  # noqa: SLF001
        if (
            transport.is_closing()
            or (task is not None and not task.done())  # cut mid-request (or lost)
            or handler._manager is None  # noqa: SLF001 - the connection was lost already
            or not handler.should_linger(transport, stopping=self._lingering.deadline is not None)
        ):
            transport.close()
            return
        handler.transport = None  # detached: aiohttp forgets the connection, as if lost
        handler.connection_lost(None)
        self._lingering.close(transport, since=self._since)


class Http10Writer(StreamWriter):
    """The payload writer for an HTTP/1.0 request's answer. aiohttp frames the body for
    the request's version (no chunked coding: a body of unknown length ends with the
    connection) and writes the status line in it too; this one says `HTTP/1.1`, the version
    the server speaks (RFC 9110 §2.5; nginx does the same), with the framing left as it is.
    A 1.1 answer is persistent unless it says otherwise, so one that keeps no connection
    says `Connection: close` (aiohttp leaves it out, 1.0's default)."""

    async def write_headers(self, status_line: str, headers: Any) -> None:
        if status_line.startswith("HTTP/1.0 "):
            status_line = "HTTP/1.1 " + status_line[9:]
            if hdrs.CONNECTION not in headers:
                headers[hdrs.CONNECTION] = "close"
        await super().write_headers(status_line, headers)


class EdgeServer(web.Server):
    """aiohttp's low-level server with `EdgeRequestHandler` for each connection."""

    def __init__(self, *args: Any, lingering: Lingering | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections closed while the client may still be sending (`proxy.linger`).
        self.lingering = lingering if lingering is not None else Lingering()
        self._build_request = self.request_factory  # aiohttp's, or an application's
        self.request_factory = self._make_edge_request

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)

    def _make_edge_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        if message.version == HttpVersion10:  # (also aiohttp's stand-in for what it refused)
            writer = Http10Writer(protocol, self._loop)
            if not message.should_close and says_close(message.headers):
                # `keep-alive, close`: llhttp keeps the connection, but `close` wins.
                message = message._replace(should_close=True)
        return self._build_request(message, payload, protocol, writer, task)


class EdgeAppRunner(web.AppRunner):
    """An `aiohttp.web.Application`'s runner whose connections get the edge's handling
    (`EdgeServer`): the admin port's. aiohttp's own would quote the bytes it refuses
    (a token in an oversized `Authorization` header) in a `HTTP/1.0` answer, with a body
    even for HEAD, and call every limit a 400."""

    def __init__(
        self, app: web.Application, *, lingering: Lingering | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._lingering = lingering

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the application started, as aiohttp does it
        return EdgeServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            lingering=self._lingering,
            **self._kwargs,
        )
