"""An aiohttp upstream: server-sent events, WebSocket, endless downloads, br/gzip bodies.

Run as `python -m tests.interop.aio_app PORT`. `/ai/stats` tells how many endless
downloads started and how many saw their client go away, so a test can check that the
proxy released the upstream connection when its own client disconnected.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import sys
import time

from aiohttp import WSMsgType, web

PAYLOAD = b"".join(b'{"n": %d, "text": "compressible text"}\n' % i for i in range(500))


def brotli_stored(data: bytes) -> bytes:
    """A valid brotli stream holding `data` uncompressed (no brotli library is installed).

    RFC 7932: WBITS=16 (one 0 bit), a non-last metablock with ISUNCOMPRESSED=1 and a
    16-bit MLEN-1, padding to a byte, the raw bytes, then an empty last metablock.
    """
    assert 0 < len(data) <= 65536
    bits = 0  # WBITS (1 bit) = 0, ISLAST (1 bit) = 0, MNIBBLES (2 bits) = 0 (four nibbles)
    bits |= (len(data) - 1) << 4  # MLEN-1 in bits 4..19
    bits |= 1 << 20  # ISUNCOMPRESSED
    header = bits.to_bytes(3, "little")  # 21 bits, zero-padded to 24
    return header + data + b"\x03"  # ISLAST=1, ISLASTEMPTY=1


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "query_string": request.query_string,
            "raw_query": request.raw_path.partition("?")[2],
            "headers": [
                [k.decode("utf-8", "replace"), v.decode("utf-8", "replace")]
                for k, v in request.raw_headers
            ],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "version": f"{request.version.major}.{request.version.minor}",
        }
    )


async def sse(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `n` of them, `every` s apart; or, with `key`, each one after the
    first written only once the test says it saw the one before (`POST /ai/sse-next?key=`):
    a proxy that held events back would never see the next one asked for, however slow the
    machine, where a timed stream made "held back" a matter of a few hundred ms."""
    n = int(request.query.get("n", "5"))
    every = float(request.query.get("every", "0.1"))
    key = request.query.get("key")
    gates = request.app["sse_gates"]
    if key:
        gates[key] = asyncio.Queue()
    try:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        for i in range(n):
            if key and i:
                await asyncio.wait_for(gates[key].get(), 60)  # never told: give up, abort
            event = json.dumps({"i": i, "t": time.time()})
            await resp.write(f"id: {i}\ndata: {event}\n\n".encode())
            if not key:
                await asyncio.sleep(every)
        await resp.write_eof()
        return resp
    finally:
        if key:
            gates.pop(key, None)


async def sse_next(request: web.Request) -> web.Response:
    """Release the next event of the gated stream `key` (see `sse`)."""
    gate = request.app["sse_gates"].get(request.query.get("key", ""))
    if gate is None:
        return web.json_response({"error": "no gated stream with that key is open"}, status=404)
    gate.put_nowait(None)
    return web.json_response({"released": True})


async def endless(request: web.Request) -> web.StreamResponse:
    stats = request.app["stats"]
    stats["started"] += 1
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    chunk = b"z" * 65536
    try:
        while True:
            await resp.write(chunk)
            await asyncio.sleep(0.005)
    except (ConnectionError, asyncio.CancelledError):
        stats["ended"] += 1
        raise
    return resp  # pragma: no cover - never reached


async def dies(request: web.Request) -> web.StreamResponse:
    """A chunked answer whose server dies after two chunks (a worker killed mid-stream,
    as gunicorn's timeout kills one): the connection is reset, the body never ends."""
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    await resp.write(b"first;" * 20_000)
    await resp.write(b"second;")
    await asyncio.sleep(0.01)
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


async def hang(request: web.Request) -> web.Response:
    """Answers only after 30 s; counts the requests whose caller went away first."""
    stats = request.app["stats"]
    stats["hang_started"] += 1
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        stats["hang_cancelled"] += 1
        raise
    return web.Response(text="late")


async def upload(request: web.Request) -> web.Response:
    """Reads the body; counts bodies that ended before their announced length."""
    stats = request.app["stats"]
    stats["upload_started"] += 1
    size = 0
    try:
        while piece := await request.content.readany():
            size += len(piece)
    except (ConnectionError, asyncio.CancelledError):
        stats["upload_aborted"] += 1
        raise
    if request.content_length is not None and size < request.content_length:
        stats["upload_aborted"] += 1
    return web.json_response({"size": size})


async def ws_recorder(request: web.Request) -> web.WebSocketResponse:
    """Records how the client side closed, to check the proxy passes it on."""
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.CLOSE:
            request.app["stats"]["ws_closes"].append([msg.data, msg.extra])
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break
    return ws


async def ws_auth(_: web.Request) -> web.Response:
    """Refuses every WebSocket upgrade as an authenticating application would."""
    return web.Response(
        status=401,
        text="log in first",
        headers={"WWW-Authenticate": 'Bearer realm="ws"', "Set-Cookie": "seen=1; Path=/"},
    )


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app["stats"])


async def compressed(request: web.Request) -> web.Response:
    coding = request.match_info["coding"]
    body = gzip.compress(PAYLOAD) if coding == "gzip" else brotli_stored(PAYLOAD)
    return web.Response(
        body=body,
        headers={
            "Content-Encoding": coding,
            "Content-Type": "application/x-ndjson",
            "Vary": "Accept-Encoding",
        },
    )


async def cookies(request: web.Request) -> web.Response:
    resp = web.Response(text="ok")
    for i in range(int(request.query.get("n", "1"))):
        resp.headers.add("Set-Cookie", f"k{i}=v{i}; Path=/; Secure")
    return resp


async def bigheader(request: web.Request) -> web.Response:
    size = int(request.query.get("size", "1000"))
    return web.Response(text="ok", headers={"X-Big": "b" * size})


async def utf8header(_: web.Request) -> web.Response:
    resp = web.Response(text="ok")
    resp.headers["X-Name"] = "Zoë Ünïcödé 東京"
    return resp


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"), heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            if msg.data == "drop":  # vanish without a Close frame
                request.transport.abort()
                break
            if msg.data == "close-4001":
                await ws.close(code=4001, message=b"asked to")
                break
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


async def ws_redirect(request: web.Request) -> web.Response:
    """Answers an upgrade with a redirect to this server's own `/ai/ws-followed`."""
    return web.Response(
        status=302,
        text="moved",
        headers={"Location": f"http://{request.host}/ai/ws-followed"},
    )


async def ws_followed(request: web.Request) -> web.Response:
    request.app["stats"]["ws_followed"] += 1
    return web.Response(status=404)


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["stats"] = {
        "started": 0, "ended": 0, "hang_started": 0, "hang_cancelled": 0,
        "upload_started": 0, "upload_aborted": 0, "ws_closes": [], "ws_followed": 0,
    }  # fmt: skip
    app["sse_gates"] = {}
    app.router.add_get("/ai/ready", ready)
    app.router.add_route("*", "/ai/echo", echo)
    app.router.add_get("/ai/sse", sse)
    app.router.add_post("/ai/sse-next", sse_next)
    app.router.add_get("/ai/endless", endless)
    app.router.add_get("/ai/stats", stats)
    app.router.add_get("/ai/compressed/{coding}", compressed)
    app.router.add_get("/ai/cookies", cookies)
    app.router.add_get("/ai/bigheader", bigheader)
    app.router.add_get("/ai/utf8header", utf8header)
    app.router.add_get("/ai/ws", websocket)
    app.router.add_get("/ai/ws-record", ws_recorder)
    app.router.add_get("/ai/hang", hang)
    app.router.add_route("*", "/ai/dies", dies)
    app.router.add_get("/ai/ws-auth", ws_auth)
    app.router.add_get("/ai/ws-redirect", ws_redirect)
    app.router.add_get("/ai/ws-followed", ws_followed)
    app.router.add_post("/ai/upload", upload)
    return app


if __name__ == "__main__":
    # handler_cancellation: a handler learns that its caller went away (off by default).
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        handler_cancellation=True,
        access_log=None,
    )
