"""The floor for an HTTP-aware Python proxy: parse both ways, no features, no task.

As `byte_pump.py`, but every request and response goes through aiohttp's C (llhttp)
parsers, the hop-by-hop headers are dropped, `X-Forwarded-For` and `Via` are added, and
upstream connections come from one shared pool, as in Strangler's express path. No routing,
no filters, no guards, no timeouts, no logs or metrics. The gap between this peer and
Strangler is what Strangler's features cost per request; the gap between it and the byte
pump is what parsing HTTP costs.

    python bench/peers/parsing_pump.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp.http_parser import HttpRequestParser, HttpResponseParser
from aiohttp.streams import EMPTY_PAYLOAD

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer",
     b"proxy-connection", b"proxy-authenticate", b"proxy-authorization"}
)  # fmt: skip


class Upstream(asyncio.Protocol):
    def __init__(self, idle: list[Upstream]) -> None:
        self.idle = idle
        self.client: Client | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(
            self, asyncio.get_running_loop(), 2**16, read_until_eof=True, auto_decompress=False
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        messages, _, _ = self.parser.feed_data(data)
        for message, payload in messages:
            body = b"" if payload is EMPTY_PAYLOAD else payload.read_nowait(-1)
            client, self.client = self.client, None
            self.idle.append(self)
            if client is not None:
                client.respond(message, body)

    # What the parser's body readers expect of their protocol.
    def pause_reading(self) -> None: ...

    def resume_reading(self, resume_parser: bool = True) -> None: ...

    def set_exception(self, exc: BaseException, cause: object = None) -> None: ...


class Client(asyncio.Protocol):
    def __init__(self, upstream_port: int, idle: list[Upstream]) -> None:
        self.upstream_port = upstream_port
        self.idle = idle
        self.transport: asyncio.Transport | None = None
        self.peer = b"unknown"
        self.parser = HttpRequestParser(
            self, asyncio.get_running_loop(), 2**16, max_line_size=8190, max_field_size=8190
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data: bytes) -> None:
        messages, _, _ = self.parser.feed_data(data)
        for message, _payload in messages:
            lines = [b"%s %s HTTP/1.1\r\n" % (message.method.encode(), message.path.encode())]
            lines += [k + b": " + v + b"\r\n" for k, v in message.raw_headers
                      if k.lower() not in HOP_BY_HOP]  # fmt: skip
            lines.append(b"X-Forwarded-For: " + self.peer + b"\r\nVia: 1.1 pump\r\n\r\n")
            head = b"".join(lines)
            if self.idle:
                upstream = self.idle.pop()
                upstream.client = self
                upstream.transport.write(head)  # type: ignore[union-attr]
            else:
                asyncio.get_running_loop().create_task(self.connect(head))

    async def connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(
            lambda: Upstream(self.idle), "127.0.0.1", self.upstream_port
        )
        upstream.client = self
        upstream.transport.write(head)  # type: ignore[union-attr]

    def respond(self, message: object, body: bytes) -> None:
        lines = [b"HTTP/1.1 %d %s\r\n" % (message.code, message.reason.encode())]  # type: ignore[attr-defined]
        lines += [k + b": " + v + b"\r\n" for k, v in message.raw_headers  # type: ignore[attr-defined]
                  if k.lower() not in HOP_BY_HOP]  # fmt: skip
        lines.append(b"\r\n")
        lines.append(body)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(lines))


async def main(port: int, upstream_port: int) -> None:
    idle: list[Upstream] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream_port, idle), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
