"""The fast lane's express path in process: CPU per request without system calls or neighbours.

Live benchmarks on a shared two-core machine swing by ±10%; this drives the real listener,
handler and upstream connection with in-memory transports (a request's bytes in, an nginx
answer's bytes back), so a change of a microsecond shows. Not part of `make bench`: a tool
for profiling before optimizing.

    python bench/express_profile.py [ROUTES_YAML] [--requests N] [--profile]

ROUTES_YAML (default: a one-upstream table with default telemetry) must route `/` to an
upstream; the upstream is never contacted. `--profile` prints cProfile's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.client import _UpstreamProtocol  # noqa: E402
from proxy.forward import UpstreamPool  # noqa: E402
from proxy.handler import ProxyHandler  # noqa: E402
from proxy.listener import EdgeConnection, Listener  # noqa: E402
from proxy.runtime import RuntimeHolder  # noqa: E402
from proxy.server import load_runtime  # noqa: E402
from proxy.telemetry.core import Telemetry  # noqa: E402
from proxy.upstream.registry import GuardRegistry  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
BODY = b'{"id": 1, "name": "small", "ok": true}'
ANSWER = (  # what the benchmark's nginx upstream sends
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 05:04:29 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 38\r\n"
    b"Last-Modified: Thu, 26 Nov 2026 05:04:24 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6b07bdd8-26"\r\nAccept-Ranges: bytes\r\n\r\n' + BODY
)
TABLE = """version: 1
listen: {host: 127.0.0.1, port: 8080}
admin: {host: 127.0.0.1, port: 8081}
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
default: legacy
routes: []
"""


class MemoryTransport:
    """Enough of an asyncio transport for the listener and the upstream protocol."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.sent.extend(parts)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def measure(routes: Path, requests: int) -> float:
    """Mean wall time of one request through the express path, in µs (minus loop steps)."""
    runtime = load_runtime(routes)
    config = runtime.config
    pool = UpstreamPool()
    telemetry = Telemetry(config.telemetry, log_stream=open(os.devnull, "w"))  # noqa: SIM115
    telemetry.reconfigure(config)
    guards = GuardRegistry(config, on_transition=telemetry.breaker_changed)
    await guards.start()
    handler = ProxyHandler(RuntimeHolder(runtime), pool, guards=guards, telemetry=telemetry)
    listener = Listener(handler, lambda: asyncio.Protocol(), config.limits)
    loop = asyncio.get_running_loop()
    upstream = _UpstreamProtocol(loop)
    upstream.connection_made(MemoryTransport())  # type: ignore[arg-type]
    pool.pool(config.upstreams[config.default]).put(upstream)
    conn = EdgeConnection(listener)
    client = MemoryTransport()
    conn.connection_made(client)  # type: ignore[arg-type]

    async def one() -> None:
        conn.data_received(REQUEST)
        await asyncio.sleep(0)  # the loop starts the express request
        upstream.data_received(ANSWER)
        await asyncio.sleep(0)  # the loop relays the answer

    async def steps() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    for _ in range(2000):  # warm: pools, memos, specialised bytecode
        await one()
    assert client.sent[-1].endswith(BODY), client.sent[-1:]
    assert listener.escalated <= 1, "requests left the express path"
    started = time.perf_counter()
    for _ in range(requests):
        await one()
    spent = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(requests):
        await steps()
    idle = time.perf_counter() - started
    await guards.close()
    return (spent - idle) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("routes", nargs="?", help="a routes.yaml routing / to an upstream")
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(args.routes) if args.routes else Path(tmp) / "routes.yaml"
        if not args.routes:
            routes.write_text(TABLE)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        per_request = uvloop.run(measure(routes, args.requests))
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    print(f"express path, in process: {per_request:.1f} µs per request")


if __name__ == "__main__":
    main()
