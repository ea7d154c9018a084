"""A fault-injecting upstream: a real aiohttp server whose misbehaviour tests switch on.

Run it as a process (`python -m tests.support.faulty --port P --name extracted`) or use the
`faulty()` context manager, which does that on an ephemeral port and stops it afterwards.

Faults, set for the next `count` requests (or all) with `POST /-/faults`, or for a single
request with an `X-Fault` header (`X-Fault: status=503`, `hang`, `slow=0.2`, `reset`, `refuse`,
`cut=LENGTH`, `stall=LENGTH`):

- `ok`      200 with JSON describing what arrived (name, attempt number, method, path, body size)
- `status`  answer `status` (e.g. 503 bursts: `{"mode": "status", "status": 503, "count": 5}`)
- `refuse`  close the connection without reading the body or answering
- `hang`    never answer (until the client gives up or `delay` seconds pass)
- `reset`   send headers and part of a large body (100 kB), then reset the connection
- `cut`     send headers and part of a body (`length`, 2 kB by default), then reset
- `stall`   send headers and part of a body, then nothing for `delay` seconds
- `coded`   answer with a transfer coding a proxy cannot relay (`gzip, chunked`)
- `slow`    wait `delay` seconds, then answer 200

`GET /-/stats` counts attempts (per method and path, plus request body bytes received);
`POST /-/reset` clears counts and faults. Control paths never count as attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from tests.support.procs import PYTHON, free_port, running

MODES = ("ok", "status", "refuse", "hang", "reset", "slow", "cut", "stall", "coded")


@dataclass
class Fault:
    mode: str = "ok"
    status: int = 503
    delay: float = 3600.0
    count: int | None = None  # requests left; None = until changed
    retry_after: str | None = None  # a `status` answer's Retry-After
    length: int = 2000  # the Content-Length `cut` and `stall` announce

    @classmethod
    def parse(cls, data: dict) -> Fault:
        mode = data.get("mode", "ok")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        default_delay = 3600.0 if mode == "hang" else 0.0
        return cls(
            mode=mode,
            status=int(data.get("status", 503)),
            delay=float(data.get("delay", default_delay)),
            count=None if data.get("count") is None else int(data["count"]),
            retry_after=data.get("retry_after"),
            length=int(data.get("length") or 2000),
        )

    @classmethod
    def from_header(cls, value: str) -> Fault:
        mode, _, arg = value.strip().partition("=")
        if mode == "status":
            return cls(mode="status", status=int(arg or 503))
        if mode in ("slow", "hang"):
            return cls.parse({"mode": mode, **({"delay": arg} if arg else {})})
        if mode in ("cut", "stall"):  # `stall=100000`: a body too big to be read whole first
            return cls.parse({"mode": mode, **({"length": arg} if arg else {})})
        return cls.parse({"mode": mode})


@dataclass
class State:
    name: str
    fault: Fault = field(default_factory=Fault)
    attempts: int = 0
    by_method: Counter = field(default_factory=Counter)
    by_path: Counter = field(default_factory=Counter)
    body_bytes: int = 0
    completed: int = 0

    def next_fault(self, request: web.BaseRequest) -> Fault:
        header = request.headers.get("X-Fault")
        if header:
            return Fault.from_header(header)
        fault = self.fault
        if fault.count is not None:
            if fault.count <= 0:
                self.fault = fault = Fault()
            else:
                fault.count -= 1
        return fault


def build_app(name: str) -> web.Application:
    state = State(name)
    app = web.Application()

    async def set_faults(request: web.Request) -> web.Response:
        try:
            state.fault = Fault.parse(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"fault": state.fault.__dict__})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": state.name,
                "attempts": state.attempts,
                "completed": state.completed,
                "by_method": dict(state.by_method),
                "by_path": dict(state.by_path),
                "body_bytes": state.body_bytes,
                "fault": state.fault.__dict__,
            }
        )

    async def reset(request: web.Request) -> web.Response:
        state.fault = Fault()
        state.attempts = state.body_bytes = state.completed = 0
        state.by_method.clear()
        state.by_path.clear()
        return web.json_response({"reset": True})

    async def anything(request: web.Request) -> web.StreamResponse:
        state.attempts += 1
        attempt = state.attempts
        state.by_method[request.method] += 1
        state.by_path[request.path] += 1
        fault = state.next_fault(request)
        transport = request.transport
        if fault.mode == "refuse":
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing more to say on this connection
        body = await request.read()
        state.body_bytes += len(body)
        if fault.mode == "hang":
            loop = asyncio.get_running_loop()
            deadline = loop.time() + fault.delay
            while loop.time() < deadline and transport is not None and not transport.is_closing():
                await asyncio.sleep(0.02)
            raise asyncio.CancelledError
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault.mode == "coded" and transport is not None:  # no response aiohttp would write
            transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
            transport.close()
            raise asyncio.CancelledError
        if fault.mode in ("cut", "stall"):  # a body that never completes
            resp = web.StreamResponse(status=200, headers={"Content-Length": str(fault.length)})
            await resp.prepare(request)
            await resp.write(b'{"partial": "')
            if fault.mode == "stall":
                await asyncio.sleep(fault.delay or 3600.0)
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        if fault.mode == "reset":
            resp = web.StreamResponse(status=200, headers={"Content-Length": "100000"})
            await resp.prepare(request)
            await resp.write(b"x" * 1000)
            await asyncio.sleep(0.01)
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        payload = {
            "server": state.name,
            "attempt": attempt,
            "method": request.method,
            "path": request.path_qs,
            "body_bytes": len(body),
            "tenant": request.headers.get("X-Tenant-ID"),
        }
        status = fault.status if fault.mode == "status" else 200
        state.completed += 1
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/json",
            headers=headers,
        )  # fmt: skip

    app.router.add_post("/-/faults", set_faults)
    app.router.add_get("/-/stats", stats)
    app.router.add_post("/-/reset", reset)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


class Faulty:
    """A handle on a running faulty server, for tests."""

    def __init__(self, url: str, port: int) -> None:
        self.url = url
        self.port = port

    def set(
        self,
        mode: str = "ok",
        *,
        status: int | None = None,
        count: int | None = None,
        delay: float | None = None,
        retry_after: str | None = None,
        length: int | None = None,
    ) -> None:
        body: dict = {"mode": mode, "count": count, "retry_after": retry_after, "length": length}
        if status is not None:
            body["status"] = status
        if delay is not None:
            body["delay"] = delay
        httpx.post(f"{self.url}/-/faults", json=body, timeout=5).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/-/stats", timeout=5).json()

    def attempts(self) -> int:
        return int(self.stats()["attempts"])

    def reset(self) -> None:
        httpx.post(f"{self.url}/-/reset", timeout=5).raise_for_status()


@contextmanager
def faulty(name: str = "faulty") -> Iterator[Faulty]:
    """Start a faulty server process on an ephemeral port; always stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [PYTHON, "-m", "tests.support.faulty", "--port", str(port), "--name", name]
    with running(args, ready_url=f"{url}/-/stats"):
        yield Faulty(url, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="faulty")
    args = parser.parse_args()
    web.run_app(
        build_app(args.name), host=args.host, port=args.port, print=None, access_log=None,
        shutdown_timeout=0.2,  # stalls and hangs are not waited for at teardown
    )  # fmt: skip


if __name__ == "__main__":
    main()
