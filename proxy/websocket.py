"""WebSocket upgrades, proxied both ways: text, binary, ping/pong and close codes."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WebSocketError, WSMsgType, web

from proxy.config.model import Upstream
from proxy.errors import error_response
from proxy.filters.headers import HOP_BY_HOP, connection_tokens
from proxy.forward import UpstreamPool, buffer_prefix, upstream_url

if TYPE_CHECKING:
    from proxy.exchange import Exchange

# Negotiated by each hop itself, never copied across.
_WS_OWN = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "host",
        "content-length",
    }
)


# Headers of a refused upgrade that describe the upstream's body (relayed only with the
# body, when it was kept) or that the proxy sets itself.
_DESCRIBE_BODY = frozenset(
    {"content-length", "content-type", "content-encoding", "content-range", "cache-control"}
)
_NOT_RELAYED_ON_REFUSAL = HOP_BY_HOP | _DESCRIBE_BODY | {"x-request-id"}
_NOT_RELAYED_WITH_BODY = HOP_BY_HOP | {"content-length", "x-request-id"}

# The body of an upgrade the upstream refused ("token expired" as JSON, say): aiohttp's
# handshake error keeps only status and headers, so `HandshakeResponse` keeps the body here
# (a context variable: set and read in the task doing the handshake).
REFUSAL_BODY_LIMIT = 64 * 1024
_refusal: ContextVar[tuple[int, bytes] | None] = ContextVar("ws_refusal", default=None)


class HandshakeResponse(aiohttp.ClientResponse):
    """The client response class of the WebSocket session: reads and keeps the body of a
    refused upgrade (up to `REFUSAL_BODY_LIMIT`, within 10 s) before aiohttp drops it."""

    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        response = await super().start(connection)
        if self.status != 101 and 300 <= self.status <= 599:
            try:
                async with asyncio.timeout(10.0):  # not wait_for: it can swallow a cancel
                    body, too_big = await buffer_prefix(self.content, REFUSAL_BODY_LIMIT)
            except (TimeoutError, aiohttp.ClientError):
                return response
            if not too_big:
                _refusal.set((self.status, body))
        return response


async def _never_follow(_session: Any, _ctx: Any, params: Any) -> None:
    """aiohttp's `ws_connect` follows redirects, to any host: an open redirect in the
    upstream would make the proxy connect wherever it points, with the client's headers.
    A redirect is the upstream's answer; it is relayed to the client like a refusal."""
    response = params.response
    response.release()
    raise aiohttp.WSServerHandshakeError(
        response.request_info,
        (),
        status=response.status,
        message="redirect not followed",
        headers=response.headers,
    )


async def going_away(open_sessions: set[Any], timeout: float = 0.5) -> None:
    """Close every proxied WebSocket with 1001 (going away) on both sides: the proxy is
    stopping, and a bare TCP close would look like a crash (1006) to both peers."""

    async def close(pair: Any) -> None:
        client_ws, upstream_ws = pair
        await asyncio.gather(
            upstream_ws.close(code=1001, message=b"proxy going away"),
            client_ws.close(code=1001, message=b"proxy going away"),
            return_exceptions=True,
        )

    pairs = list(open_sessions)
    if pairs:
        await asyncio.wait([asyncio.ensure_future(close(p)) for p in pairs], timeout=timeout)


def no_redirects() -> aiohttp.TraceConfig:
    """A trace config for the WebSocket session that turns a redirect into its answer."""
    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(_never_follow)
    return trace


def refused_upgrade_headers(
    status: int, headers: Sequence[tuple[str, str]], *, with_body: bool = False
) -> list[tuple[str, str]] | None:
    """The upstream headers to pass on when it answered an upgrade with `status`, not 101.

    A 3xx, 4xx or 5xx is the upstream's answer and the client should see it as such: a
    401 with its `WWW-Authenticate`, a 403, a 404, a redirect's `Location`, cookies. A
    502 would blame the proxy and count against the upstream's breaker. Anything else
    (a 2xx from a server that ignored `Upgrade`, a 101 with a bad accept key) is None:
    the upstream did not speak WebSocket, a 502.
    """
    if not 300 <= status <= 599:
        return None
    base = _NOT_RELAYED_WITH_BODY if with_body else _NOT_RELAYED_ON_REFUSAL
    drop = base | connection_tokens(headers)
    return [(k, v) for k, v in headers if k.lower() not in drop]


# The handshake's own fields, which the proxy makes for its side of the upgrade.
_NOT_RELAYED_ON_ACCEPT = HOP_BY_HOP | {
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "x-request-id",
    "date",
}


def accepted_upgrade_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's 101 fields to pass on: what the application said (a session cookie
    set on the handshake, its own headers), not the handshake mechanics."""
    drop = _NOT_RELAYED_ON_ACCEPT | connection_tokens(headers)
    return [(k, v) for k, v in headers if k.lower() not in drop]


# RFC 6455 §7.4.1: reserved for reporting, never sent in a Close frame.
_UNSENDABLE_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


def close_frame(code: int | None, reason: str, lost: int = 1011) -> tuple[int, bytes]:
    """The Close frame to pass on for one the other side sent (or a connection it lost).

    The code and reason travel end to end (a client may act on an application's 4xxx code
    and its text). A code that may not appear on the wire (none given, 1005, an abnormal
    1006) becomes 1000 without a reason, or `lost` when the connection was lost (1011 for
    an upstream that vanished, 1001 for a client); reasons are cut to the 123 bytes a
    control frame can carry.
    """
    if code is None or code in _UNSENDABLE_CLOSE_CODES or not 1000 <= code <= 4999:
        return (lost if code in (1006, 1015) else 1000), b""
    data = reason.encode("utf-8")[:123]
    return code, data.decode("utf-8", "ignore").encode("utf-8")


# How long a close being passed on may take once the client's connection is gone.
_PASS_CLOSE = 0.5


def handshake_timeout(upstream: Upstream) -> float | None:
    """The longest a WebSocket handshake with `upstream` may take: `timeout.connect`, then
    `timeout.read` (or `timeout.total`) for the answer; None when neither bounds it."""
    wait = [t for t in (upstream.timeout.read, upstream.timeout.total) if t is not None]
    return upstream.timeout.connect + min(wait) if wait else None


def handshake_problem(
    method: str, version: tuple[int, int], headers: Mapping[str, str], has_body: bool
) -> tuple[int, str] | None:
    """Why a WebSocket upgrade request must be refused, as (status, reason); None if valid.

    Checked before anything is sent upstream (RFC 6455 §4.2.1): only a bodiless HTTP/1.1
    GET with `Connection: upgrade`, `Upgrade: websocket`, a 16-byte base64 key and version
    13 switches protocols. Anything else must not end in a 101: a POST would be replayed
    upstream as a GET, and a body would be read as WebSocket frames after the switch.
    """
    if method != "GET":
        return 400, f"a WebSocket upgrade must be a GET, not {method}"
    if version < (1, 1):
        return 400, "a WebSocket upgrade needs HTTP/1.1"
    if has_body:
        return 400, "a WebSocket upgrade request must not have a body"
    tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if "upgrade" not in tokens:
        return 400, "Upgrade: websocket without 'Connection: upgrade'"
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return 400, "Sec-WebSocket-Key must be 16 bytes in base64"
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        return 426, "only WebSocket version 13 is supported"
    return None


async def proxy_websocket(
    request: web.BaseRequest,
    pool: UpstreamPool,
    upstream: Upstream,
    path: str,
    query: str | None,
    headers: list[tuple[str, str]],
    host_header: str,
    ex: Exchange,
    *,
    max_message: int = 16 * 1024 * 1024,
    heartbeat: float | None = None,
    open_sessions: set[Any] | None = None,
) -> web.StreamResponse:
    """Connect upstream first, then accept the client, then pump frames both ways.

    Messages are relayed whole, so `max_message` bounds each one (after permessage-deflate
    inflation, which aiohttp checks as it inflates): a larger one closes that side with 1009
    and the close is passed on, as uvicorn and the websockets library do.

    A side silent for `heartbeat` seconds is pinged (aiohttp's heartbeat: any bytes from it
    reset the clock); no answer within half that ends the session as if it had vanished
    (1001 to the upstream, 1011 to the client). Pings and pongs of the two peers still pass
    through, and so do the pongs answering the proxy's own pings (an unsolicited pong is
    allowed by RFC 6455 §5.5.3, and ignored by peers).
    """
    problem = handshake_problem(
        request.method, tuple(request.version), request.headers, request.body_exists
    )
    if problem is not None:
        status, reason = problem
        ex.status = status
        return error_response(
            status,
            f"rejected WebSocket upgrade: {reason}",
            route=ex.route_name,
            request_id=ex.request_id,
            accept=request.headers.get("Accept"),
            headers={"Sec-WebSocket-Version": "13"} if status == 426 else None,
            close=True,
        )
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    send_headers = [(k, v) for k, v in headers if k.lower() not in _WS_OWN]
    send_headers.append(
        ("Host", upstream.host_header or host_header or f"{upstream.host}:{upstream.port}")
    )
    url = upstream_url(upstream, path, query).with_scheme(
        "wss" if upstream.scheme == "https" else "ws"
    )
    session = pool.websocket_session()
    _refusal.set(None)
    try:
        # The upstream's timeouts bound the handshake as they bound any request (aiohttp's
        # own would wait 5 minutes for an upstream that never answers); once switched, a
        # session lasts as long as both sides keep it (and answer pings: `heartbeat`).
        async with asyncio.timeout(handshake_timeout(upstream)):
            upstream_ws = await session.ws_connect(
                url,
                headers=send_headers,
                protocols=protocols,
                autoping=False,
                # The upstream's Close is answered with what the client answers (its own
                # code echoed), after the client answered it, not at once with aiohttp's 1000.
                autoclose=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=10.0),
                max_msg_size=max_message,
                heartbeat=heartbeat,
            )
    except aiohttp.WSServerHandshakeError as exc:
        kept = _refusal.get()
        body = kept[1] if kept is not None and kept[0] == exc.status else None
        passed = refused_upgrade_headers(
            exc.status, list((exc.headers or {}).items()), with_body=body is not None
        )
        if passed is not None and body is not None:
            # The upstream's own answer, body and all (a 401 with its challenge, a 403
            # saying why, a redirect).
            ex.status = exc.status
            answer = web.Response(status=exc.status, body=body)
            for name, value in passed:
                answer.headers.add(name, value)
            answer.headers["X-Request-ID"] = ex.request_id
            return answer
        if passed is not None:
            # The upstream's own answer (a 401 with its challenge, a 404, a redirect).
            ex.status = exc.status
            refused = error_response(
                exc.status,
                f"upstream {upstream.name} answered the WebSocket upgrade with {exc.status}",
                route=ex.route_name,
                request_id=ex.request_id,
                accept=request.headers.get("Accept"),
            )
            for name, value in passed:
                refused.headers.add(name, value)
            return refused
        ex.status = 502
        return error_response(
            502,
            f"upstream refused the WebSocket upgrade: {exc.status}",
            route=ex.route_name,
            request_id=ex.request_id,
        )
    except TimeoutError:
        ex.status = 504
        return error_response(
            504,
            f"upstream {upstream.name} did not answer the WebSocket upgrade in time",
            route=ex.route_name,
            request_id=ex.request_id,
        )
    except (aiohttp.ClientError, OSError) as exc:
        return error_response(
            502,
            f"upstream {upstream.name} unreachable: {exc.__class__.__name__}",
            route=ex.route_name,
            request_id=ex.request_id,
        )
    # autoclose=False: the client's Close is answered only once the upstream answered it, so
    # the client keeps the connection open (and the handler alive) while the close travels.
    client_ws = web.WebSocketResponse(
        protocols=[upstream_ws.protocol] if upstream_ws.protocol else (),
        autoping=False,
        autoclose=False,
        max_msg_size=max_message,
        heartbeat=heartbeat,
    )
    client_ws.headers["X-Request-ID"] = ex.request_id
    handshake = getattr(upstream_ws, "_response", None)  # aiohttp keeps the 101 there
    if handshake is not None:
        for name, value in accepted_upgrade_headers(list(handshake.headers.items())):
            client_ws.headers.add(name, value)
    await client_ws.prepare(request)
    # The 101 is sent: that is the answer, however the session ends (aiohttp cancels this
    # handler once the client's connection closes, which every session's end does).
    ex.status = 101
    session_pair = (client_ws, upstream_ws)
    if open_sessions is not None:
        open_sessions.add(session_pair)

    closing: list[object] = []  # the side whose close is being passed on, once known

    async def pump(src: object, dst: object) -> bool:
        """Relay src → dst; True once a close was passed on, False when the other pump
        already started the close (it then finishes the handshake on both sides)."""
        code: int | None = None
        reason = ""
        while True:
            msg = await src.receive()  # type: ignore[attr-defined]
            if msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)  # type: ignore[attr-defined]
            elif msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)  # type: ignore[attr-defined]
            elif msg.type == WSMsgType.PING:
                await dst.ping(msg.data)  # type: ignore[attr-defined]
            elif msg.type == WSMsgType.PONG:
                await dst.pong(msg.data)  # type: ignore[attr-defined]
            elif msg.type == WSMsgType.CLOSING:
                return False
            else:
                if msg.type == WSMsgType.CLOSE:
                    # The frame's own code: by now `close_code` may hold the 1000 that
                    # aiohttp's automatic close reply sent back.
                    code, reason = msg.data, msg.extra or ""
                elif msg.type == WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
                    # What this side was closed with (1009 for a message over the limit,
                    # 1007 for invalid UTF-8, 1002): `close_code` says 1006 by now.
                    code = msg.data.code
                break
        if closing:
            return False
        closing.append(src)  # before any await: the other pump now stays out of it
        if code is None:
            code = src.close_code  # type: ignore[attr-defined]
        code, message = close_frame(code, reason, lost=1001 if src is client_ws else 1011)
        await dst.close(code=code, message=message)  # type: ignore[attr-defined]
        if not src.closed:  # type: ignore[attr-defined]
            await src.close(code=code, message=message)  # type: ignore[attr-defined]
        return True

    tasks = [
        asyncio.ensure_future(pump(client_ws, upstream_ws)),
        asyncio.ensure_future(pump(upstream_ws, client_ws)),
    ]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # A pump that stepped aside (False) waits for the other to finish the close.
            if any(t.cancelled() or t.exception() is not None or t.result() for t in done):
                break
    finally:
        if open_sessions is not None:
            open_sessions.discard(session_pair)
        if closing:
            # A close is being passed on. aiohttp cancels this handler as soon as the
            # client's connection closes, which the proxy's own close of the client side
            # does (a message over the limit, invalid UTF-8): let the pump send that code
            # upstream rather than cut it short with 1001.
            await asyncio.wait(tasks, timeout=_PASS_CLOSE)
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Only reached with a side still open when the client vanished: "going away".
        await upstream_ws.close(code=1001)
        await client_ws.close(code=1001)
    ex.status = 101
    return client_ws
