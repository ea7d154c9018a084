"""A tiny primary/candidate pair for shadow tests, run as a real process:

    python -m tests.shadow.upstream_app --port N --role primary|candidate

Both roles serve the same resources; the candidate differs on purpose (price rounding, a
renamed field for id 3), and both add per-response noise (trace_id, generated_at).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import secrets
import time
from collections import Counter

from aiohttp import web

calls: Counter = Counter()
seen_shadow: Counter = Counter()
# `GET /slow?test=NAME` holds its answer until `GET /release?test=NAME` (or a bare
# `/release`, for all): a candidate as slow as the test needs, on no clock.
gates: dict[str, asyncio.Event] = {}


def make_app(role: str) -> web.Application:
    async def record(request: web.Request) -> None:
        calls[f"{request.method} {request.path}"] += 1
        if request.headers.get("X-Strangler-Shadow") == "1":
            seen_shadow[f"{request.method} {request.path}"] += 1

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "role": role})

    async def item(request: web.Request) -> web.Response:
        await record(request)
        ident = int(request.match_info["id"])
        price = 21.64 if role == "primary" else (21.65 if ident % 2 == 0 else 21.64)
        doc = {
            "id": ident,
            "name": "Jane",
            "email": f"jane{ident}@example.com" if role == "primary" else f"j{ident}@example.org",
            "price_with_tax": price,
            "tags": ["a", "b"],
            "trace_id": secrets.token_hex(8),
            "generated_at": time.time(),
        }
        if role == "candidate" and ident == 3:
            doc["full_name"] = doc.pop("name")
        if request.query.get("gzip"):
            return web.Response(
                body=gzip.compress(json.dumps(doc).encode()),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        return web.json_response(doc)

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        calls[f"GET /slow?{request.query_string} received"] += 1
        await gates.setdefault(request.query.get("test", ""), asyncio.Event()).wait()
        calls[f"GET /slow?{request.query_string} answered"] += 1
        return web.json_response({"slow": True})

    async def release(request: web.Request) -> web.Response:
        """Let the held `/slow` answers of one test (`?test=NAME`), or of all, go; later
        calls are held again."""
        names = [request.query["test"]] if "test" in request.query else list(gates)
        for name in names:
            gates.pop(name, asyncio.Event()).set()
        return web.json_response({"released": names})

    async def create(request: web.Request) -> web.Response:
        await record(request)
        body = await request.json()
        return web.json_response({"created": body, "role": role}, status=201)

    async def echo(request: web.Request) -> web.Response:
        """A debug page echoing the request head (per-response nonce): what the store must
        not keep verbatim."""
        await record(request)
        head = "".join(f"{k}: {v}\n" for k, v in request.headers.items())
        return web.Response(text=f"{role} {secrets.token_hex(4)}\n{head}")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"calls": dict(calls), "shadow": dict(seen_shadow)})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_get("/items/{id}", item)
    app.router.add_get("/v2/items/{id}", item)
    app.router.add_get("/slow", slow)
    app.router.add_get("/release", release)
    app.router.add_get("/echo", echo)
    app.router.add_post("/items", create)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", choices=("primary", "candidate"), required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.role), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
