"""A real HTTP upstream for proxy tests: echoes what it received, streams, misbehaves on cue.

Run as `python -m tests.support.upstream PORT`; it prints nothing and serves until killed.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    payload = {
        "method": request.method,
        "raw_path": request.raw_path,
        "path": request.path,
        "query_string": request.query_string,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "server": request.app["name"],
    }
    return web.json_response(payload, headers={"X-Upstream": request.app["name"]})


async def download(request: web.Request) -> web.StreamResponse:
    total = int(request.query.get("n", "0"))
    chunk = b"x" * 65536
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.query.get("length") == "1":
        resp.content_length = total
    await resp.prepare(request)
    sent = 0
    while sent < total and request.method != "HEAD":
        piece = chunk[: min(len(chunk), total - sent)]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    while True:
        piece = await request.content.readany()
        if not piece:
            break
        size += len(piece)
        digest.update(piece)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if code in (204, 304):
        return web.Response(status=code)
    return web.json_response({"status": code}, status=code)


async def slow(request: web.Request) -> web.Response:
    """`?s=SECONDS` (1 by default); `?gate=NAME` instead holds the answer until the test
    opens that gate (`POST /gates/NAME`): as slow as the test needs, on no clock."""
    name = request.query.get("gate")
    if name is not None:
        await request.app["gates"].setdefault(name, asyncio.Event()).wait()
    else:
        await asyncio.sleep(float(request.query.get("s", "1")))
    return web.json_response({"slow": True})


async def open_gate(request: web.Request) -> web.Response:
    """Let the `/slow?gate=NAME` answers held so far, and any later ones, go."""
    request.app["gates"].setdefault(request.match_info["name"], asyncio.Event()).set()
    return web.json_response({"opened": request.match_info["name"]})


async def cookies(_: web.Request) -> web.Response:
    resp = web.Response(text="ok")
    resp.headers.add("Set-Cookie", "a=1; Path=/")
    resp.headers.add("Set-Cookie", "b=2; Path=/")
    resp.headers.add("X-Multi", "one")
    resp.headers.add("X-Multi", "two")
    return resp


async def gzipped(_: web.Request) -> web.Response:
    body = gzip.compress(b'{"compressed": true}')
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def redirect(_: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/echo"})


async def hop(_: web.Request) -> web.Response:
    return web.Response(
        text="hop",
        headers={"Connection": "X-Internal", "X-Internal": "secret", "Keep-Alive": "timeout=5"},
    )


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat",))
    ws.headers["Set-Cookie"] = "ws_session=abc; Path=/"  # an app may set cookies on the 101
    ws.headers["X-Upstream"] = request.app["name"]
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            if msg.data.startswith("close:"):
                await ws.close(code=int(msg.data.split(":")[1]), message=b"bye")
                break
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


async def ws_record(request: web.Request) -> web.WebSocketResponse:
    """Echoes, and records the code of the Close frame it receives (`/ws-closes`)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    request.app["ws_closes"].append(ws.close_code)
    return ws


async def ws_closes(request: web.Request) -> web.Response:
    return web.json_response(request.app["ws_closes"])


async def auth_check(request: web.Request) -> web.Response:
    """An identity provider for forward authentication: `Bearer good` is alice, `Bearer
    login` is sent to a login page, anything else is refused. It records what it was
    shown, so a test can see the check's request."""
    request.app["auth_seen"].append(
        [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers]
    )
    credential = request.headers.get("Authorization", "")
    if credential == "Bearer good":
        return web.Response(status=204, headers={"X-Auth-User": "alice", "X-Other": "no"})
    if credential == "Bearer login":
        return web.Response(status=302, headers={"Location": "/login"})
    if credential == "Bearer broken":
        return web.Response(status=500, text="the check itself failed")
    if credential == "Bearer slow":  # answers once the caller gives up (or in a minute)
        await asyncio.sleep(60)
        return web.Response(status=204, headers={"X-Auth-User": "alice"})
    return web.json_response(
        {"error": "who are you?"}, status=401, headers={"WWW-Authenticate": 'Bearer realm="x"'}
    )


async def auth_seen(request: web.Request) -> web.Response:
    return web.json_response(request.app["auth_seen"])


def make_app(name: str) -> web.Application:
    app = web.Application(client_max_size=1024**4)
    app["name"] = name
    app["auth_seen"] = []
    app["gates"] = {}
    app["ws_closes"] = []
    app.router.add_get("/auth/check", auth_check)
    app.router.add_get("/auth/seen", auth_seen)
    app.router.add_get("/bytes", download)
    app.router.add_post("/upload", upload)
    app.router.add_put("/upload", upload)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/svc/slow", slow)
    app.router.add_post("/gates/{name}", open_gate)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/hop", hop)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/ws-record", ws_record)
    app.router.add_get("/ws-closes", ws_closes)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


if __name__ == "__main__":
    port = int(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else "upstream"
    # A test upstream stops at once: handlers still sleeping (a /slow call, a stall) are
    # not waited for, or every module using one would pay seconds at teardown.
    web.run_app(
        make_app(name), host="127.0.0.1", port=port, print=None, access_log=None,
        shutdown_timeout=0.2,
    )  # fmt: skip
    json.dumps({})
