"""A real OTLP/HTTP trace receiver for tests: decodes what exporters POST to /v1/traces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.procs import free_port, wait_http


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # 2 server, 3 client
    attributes: dict = field(default_factory=dict)


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpSink:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.posts = 0
        self.headers: list[dict[str, str]] = []  # of each POST
        self.status = 200  # what the next POSTs get (tests of failing collectors set it)
        self._lock = threading.Lock()

    def add(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        got = []
        for rs in req.resource_spans:
            attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = attrs.get("service.name", "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            service=service,
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        with self._lock:
            self.spans.extend(got)
            self.posts += 1
            self.headers.append(headers or {})

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


@contextmanager
def otlp_sink() -> Iterator[tuple[str, OtlpSink]]:
    """Serve an OTLP/HTTP endpoint on an ephemeral port (in a thread); yields (base URL, sink)."""
    sink = OtlpSink()
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def traces(request: web.Request) -> web.Response:
        if sink.status != 200:
            with sink._lock:
                sink.posts += 1
            return web.Response(status=sink.status)
        sink.add(await request.read(), dict(request.headers))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        app.router.add_get("/", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        yield base, sink
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
