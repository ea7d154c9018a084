"""Lingering close: the last answer on a connection reaches a client that is still sending.

When the proxy ends a connection on its own initiative (after a chunked body with trailer
fields, a refused request, an answer the client did not expect to be the last, while the
client has pipelined more), the client may still be sending. A socket closed with bytes
unread in its receive buffer, or that receives bytes after it was closed, answers with a
TCP RST: the proxy's kernel drops whatever of the answer it has not transmitted yet, a
client blocked writing the rest of its request gets EPIPE/ECONNRESET and never reads the
answer, and some kernels drop even what they received but the client has not read.

So such a connection is not closed but handed to `LingeringClose`, as nginx does
(`lingering_close`): its sending side is shut down once the answer is written (a FIN
after the answer), and what the client still sends is read and discarded until the
client closes, nothing arrives for `LINGER_TIMEOUT`, `LINGER_TIME` has passed in all, or
more than `LINGER_BYTES` were discarded; only then is it closed. A graceful shutdown
ends the lingering at its grace deadline (`Lingering.stop_by`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios
from typing import Any

log = logging.getLogger("strangler.linger")

LINGER_TIMEOUT = 5.0  # s with nothing read: the client is done (nginx: lingering_timeout 5s)
LINGER_TIME = 10.0  # s of lingering at most (aiohttp lingers 10 s on an unread body)
# Discarded bytes at most: enough for what a client can have in flight when the proxy
# closes (a Linux socket's send buffer grows to 4 MiB), not a sink for an endless stream.
LINGER_BYTES = 4 * 1024 * 1024


def unread_bytes(transport: Any) -> int:
    """Bytes the client sent that are still in the kernel's receive buffer (FIONREAD), or 0
    when that cannot be told."""
    sock = transport.get_extra_info("socket")
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


def _unsent(transport: Any) -> int:
    try:
        return int(transport.get_write_buffer_size())
    except (AttributeError, RuntimeError):
        return 0


class Lingering:
    """The connections lingering in one worker: counted, and ended by a shutdown."""

    def __init__(self) -> None:
        self.connections: set[LingeringClose] = set()
        self.deadline: float | None = None  # loop time: a shutdown's end of grace
        self.started = 0  # lingering closes begun since the worker started
        self._idle: asyncio.Future[None] | None = None

    def close(self, transport: Any, since: float | None = None) -> None:
        """Take over `transport` (its answer written or queued) and close it lingering.
        `since` (loop time): when the answer ended, if the connection was kept (read from)
        after it; `LINGER_TIME` counts from then."""
        if transport.is_closing():
            return
        LingeringClose(self, transport, since).begin()

    def _gone(self, conn: LingeringClose) -> None:
        self.connections.discard(conn)
        if not self.connections and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def stop_by(self, deadline: float) -> None:
        """A graceful shutdown began: no lingering past `deadline` (loop time), the end of
        its grace, for these connections and those that begin lingering meanwhile."""
        self.deadline = deadline
        for conn in list(self.connections):
            conn.rearm()

    async def closed(self) -> None:
        """Until every lingering connection is closed (by itself, or at the deadline)."""
        while self.connections:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                await self._idle
            finally:
                self._idle = None

    def abort(self) -> None:
        for conn in list(self.connections):
            conn.finish(abort=True)


class LingeringClose(asyncio.Protocol):
    """A connection's last moments (see the module docstring): FIN sent, input discarded."""

    __slots__ = ("registry", "transport", "_loop", "_timer", "_end", "_last", "discarded")

    def __init__(self, registry: Lingering, transport: Any, since: float | None = None) -> None:
        self.registry = registry
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        now = self._loop.time()
        self._end = (now if since is None else min(since, now)) + LINGER_TIME
        self._last = now  # when bytes last arrived
        self.discarded = 0

    def begin(self) -> None:
        transport = self.transport
        try:
            transport.set_protocol(self)
        except NotImplementedError:  # a transport that cannot (none of the event loop's)
            transport.close()
            return
        self.registry.connections.add(self)
        self.registry.started += 1
        try:
            transport.write_eof()  # a FIN after what is queued: the client reads to the end
            if not transport.is_reading():
                transport.resume_reading()  # a lane may have paused it
        except (OSError, RuntimeError):  # the connection is already gone
            self.finish(abort=True)
            return
        self.rearm()

    def rearm(self) -> None:
        """(Re)schedule the one timer for whichever limit comes first."""
        if self._timer is not None:
            self._timer.cancel()
        end = self._end
        if self.registry.deadline is not None:
            end = min(end, self.registry.deadline)
        due = min(end, self._last + LINGER_TIMEOUT)
        self._timer = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        deadline = self.registry.deadline
        if deadline is not None and now >= deadline:
            self.finish(abort=True)  # the shutdown's grace is over
            return
        if now < self._end and now < self._last + LINGER_TIMEOUT:
            self.rearm()  # bytes arrived since the timer was set: the wait starts again
            return
        # Closed, not aborted: an answer the client still reads (slowly) is written to the
        # end first, as a plain close always did.
        self.finish()

    def finish(self, *, abort: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if abort:
            self.registry._gone(self)  # noqa: SLF001
            transport.abort()
            return
        if not transport.is_closing():
            transport.close()
        deadline = self.registry.deadline
        if deadline is not None and _unsent(transport):
            # The proxy is stopping and a slow reader still has answer bytes to take: the
            # shutdown waits for them (`connection_lost` ends this) until its deadline, as
            # it waits for any connection's last bytes, then cuts.
            self._timer = self._loop.call_at(deadline, self._cut)
            return
        self.registry._gone(self)  # noqa: SLF001

    def _cut(self) -> None:
        self._timer = None
        self.finish(abort=True)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.discarded += len(data)
        if self.discarded > LINGER_BYTES:
            log.debug("lingering close: %d bytes discarded, closing", self.discarded)
            self.finish()
            return
        self._last = self._loop.time()

    def eof_received(self) -> bool:
        return False  # the client closed its side too: the transport closes

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.registry._gone(self)  # noqa: SLF001

    def pause_writing(self) -> None:
        return None

    def resume_writing(self) -> None:
        return None
