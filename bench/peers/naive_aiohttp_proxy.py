"""The naive aiohttp reverse proxy the core-proxy issue measures against (about 0.26x nginx).

What a developer writes in an afternoon: an aiohttp web application with a catch-all route
that replays each request through a `ClientSession` and returns the answer. No forwarding
headers, no routing, no logs, no limits: a peer for `make bench`, not a product.

    python bench/peers/naive_aiohttp_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


def build(upstream: str) -> web.Application:
    async def proxy(request: web.Request) -> web.Response:
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(
            request.method,
            upstream + request.path_qs,
            headers={k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP},
            data=await request.read() if request.body_exists else None,
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP]
            return web.Response(status=resp.status, body=body, headers=headers)

    async def session(app: web.Application):
        app["session"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


if __name__ == "__main__":
    web.run_app(
        build(sys.argv[2]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
