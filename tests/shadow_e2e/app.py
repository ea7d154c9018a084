"""A counting primary/candidate for shadow end-to-end tests, run as a real process:

    python -m tests.shadow_e2e.app --port N --name NAME [--delay SECONDS]

Resources answer deterministically (so a body seen through the proxy can be compared with the
body fetched directly) after `--delay` seconds; `GET /-/counts` reports how many times each
`METHOD path` was called and how many of those carried `X-Strangler-Shadow: 1`, so tests can
prove who was called and how often. `GET /blobs/{size}` answers a JSON document of exactly
`size` bytes (`blob_doc`), for tests about big answers. SIGTERM exits at once, even with
requests in flight (a 2-second candidate must not hold up a test's teardown).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from aiohttp import web


def item_doc(ident: int) -> dict:
    """The body of `GET /items/{ident}`; ids divisible by 7 do not exist (404)."""
    if ident % 7 == 0:
        return {"error": {"code": "NOT_FOUND", "message": f"no item {ident}"}}
    return {"id": ident, "name": f"item-{ident}", "price": f"{ident * 3}.{ident % 100:02d}"}


def item_status(ident: int) -> int:
    return 404 if ident % 7 == 0 else 200


def blob_doc(size: int) -> bytes:
    """The body of `GET /blobs/{size}`: `{"blob":"aaa…"}`, `size` bytes in all (at least 11)."""
    return b'{"blob":"' + b"a" * max(0, size - 11) + b'"}'


def make_app(name: str, delay: float) -> web.Application:
    calls: Counter = Counter()
    shadowed: Counter = Counter()

    def record(request: web.Request) -> None:
        key = f"{request.method} {request.path}"
        calls[key] += 1
        if request.headers.get("X-Strangler-Shadow") == "1":
            shadowed[key] += 1

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "name": name})

    async def counts(_: web.Request) -> web.Response:
        return web.json_response({"calls": dict(calls), "shadow": dict(shadowed)})

    async def item(request: web.Request) -> web.Response:
        record(request)
        if delay:
            await asyncio.sleep(delay)
        ident = int(request.match_info["id"])
        return web.json_response(item_doc(ident), status=item_status(ident))

    blobs: dict[int, bytes] = {}

    async def blob(request: web.Request) -> web.Response:
        record(request)
        if delay:
            await asyncio.sleep(delay)
        size = int(request.match_info["size"])
        if size not in blobs:
            blobs[size] = blob_doc(size)
        return web.Response(body=blobs[size], content_type="application/json")

    async def create(request: web.Request) -> web.Response:
        record(request)
        if delay:
            await asyncio.sleep(delay)
        body = await request.json()
        return web.json_response(
            {"created": body, "by": name, "n": calls["POST /items"]}, status=201
        )

    async def change(request: web.Request) -> web.Response:
        record(request)
        await request.read()
        return web.json_response({"method": request.method, "id": int(request.match_info["id"])})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/-/counts", counts)
    app.router.add_get("/items/{id:\\d+}", item)
    app.router.add_get("/blobs/{size:\\d+}", blob)
    app.router.add_post("/items", create)
    for method in ("PUT", "PATCH", "DELETE"):
        app.router.add_route(method, "/items/{id:\\d+}", change)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="upstream")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(
        make_app(args.name, args.delay),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=0.1,
    )


if __name__ == "__main__":
    main()
