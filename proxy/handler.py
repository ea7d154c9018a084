"""The request pipeline, as thin I/O glue over pure stages.

listener → path safety → router → filters (request id, forwarding, tenant) → dispatcher
(which side) → upstream (guard: breaker, bulkhead, retries) → ACL → response; shadow work
branches off after the primary answered. Each stage's rules live in its own module; this
one only wires them and turns failures into the responses clients expect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from proxy.config.model import SAFE_METHODS, Route, Upstream
from proxy.errors import error_response
from proxy.filters.headers import (
    append_via,
    forwarding_headers,
    is_trusted,
    request_id,
    strip_hop_by_hop,
)
from proxy.forward import (
    BodySource,
    UpstreamPool,
    abort_connection,
    client_headers,
    read_limited,
    relay,
    upstream_url,
)
from proxy.pathsafety import UnsafePath, normalize_path
from proxy.routing import expand_rewrite
from proxy.runtime import Runtime, RuntimeHolder

log = logging.getLogger("strangler.proxy")

LEGACY = "legacy"
EXTRACTED = "extracted"
_BUFFER_LIMIT = 8 * 1024 * 1024  # bodies buffered for replay (fallback/retry/ACL)


class UpstreamFailure(Exception):
    """An upstream attempt failed before any response byte reached the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # what the client would get: 502, 503 or 504
        self.reason = reason


@dataclass(slots=True)
class Exchange:
    """Per-request facts gathered along the pipeline, for logs and metrics."""

    request_id: str
    method: str
    path: str
    route: Route | None
    side: str = LEGACY
    upstream: str = ""
    status: int = 0
    bytes_out: int = 0
    tenant: str | None = None
    fallback_reason: str | None = None
    attempts: int = 0

    @property
    def route_name(self) -> str:
        return self.route.name if self.route else "default"


class ProxyHandler:
    """Callable passed to aiohttp's low-level server."""

    def __init__(
        self,
        holder: RuntimeHolder,
        pool: UpstreamPool,
        *,
        on_finish: Callable[[Exchange, float], None] | None = None,
    ) -> None:
        self.holder = holder
        self.pool = pool
        self.on_finish = on_finish
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        self.idle.clear()
        started = time.monotonic()
        rt = self.holder.current
        rid = request_id(request.headers.get("X-Request-ID"))
        ex = Exchange(rid, request.method, request.raw_path, None)
        try:
            resp = await self._handle(request, rt, ex)
            ex.status = resp.status
            return resp
        except asyncio.CancelledError:
            ex.status = 499  # the client went away
            raise
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()
            if self.on_finish is not None:
                self.on_finish(ex, time.monotonic() - started)

    async def _handle(
        self, request: web.BaseRequest, rt: Runtime, ex: Exchange
    ) -> web.StreamResponse:
        raw = request.raw_path
        qpos = raw.find("?")
        raw_path, query = (raw, "") if qpos < 0 else (raw[:qpos], raw[qpos + 1 :])
        accept = request.headers.get("Accept")
        try:
            path = normalize_path(raw_path)
        except UnsafePath as exc:
            return error_response(
                400,
                f"rejected path: {exc}",
                route=None,
                request_id=ex.request_id,
                accept=accept,
                close=True,
            )
        ex.path = path
        hosts = request.headers.getall("Host", ())
        if len(hosts) > 1 or (not hosts and request.version >= aiohttp.HttpVersion11):
            return error_response(
                400,
                "exactly one Host header is required",
                route=None,
                request_id=ex.request_id,
                accept=accept,
                close=True,
            )
        host_header = hosts[0] if hosts else ""
        host = _bare_host(host_header)
        match = rt.table.match(request.method, path, host, request.headers)
        route = match.route if match else None
        params = match.params if match else {}
        ex.route = route
        config = rt.config

        side = self._choose_side(route)
        if side == EXTRACTED and route is not None and route.target:
            upstream = config.upstreams[route.target]
            up_path = expand_rewrite(route.rewrite, params) if route.rewrite else path
        else:
            side = LEGACY
            upstream = config.upstreams[config.default]
            up_path = path
        ex.side = side
        ex.upstream = upstream.name

        peer = _peer(request)
        headers = strip_hop_by_hop(
            [h for h in client_headers(request) if h[0].lower() not in ("expect", "x-request-id")],
            keep=_UPGRADE_KEEP if _is_websocket(request) else frozenset(),
        )
        headers = forwarding_headers(
            headers,
            peer=peer,
            scheme=request.scheme,
            host=host_header,
            trusted=is_trusted(peer, rt.trusted),
        )
        append_via(headers)
        headers.append(("X-Request-ID", ex.request_id))

        if _is_websocket(request):
            from proxy.websocket import proxy_websocket

            return await proxy_websocket(
                request, self.pool, upstream, up_path, query, headers, host_header, ex
            )

        # Request body: stream it unless something may need to send it twice.
        can_fallback = (
            side == EXTRACTED
            and route is not None
            and route.fallback == LEGACY
            and request.method in SAFE_METHODS
        )
        body: bytes | BodySource | None = None
        if request.body_exists:
            if request.headers.get("Expect", "").lower() == "100-continue":
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if can_fallback:
                body = await read_limited(request.content, _BUFFER_LIMIT)
                if body is None:
                    return error_response(
                        413,
                        f"request body over {_BUFFER_LIMIT} bytes on a route with fallback",
                        route=ex.route_name,
                        request_id=ex.request_id,
                        accept=accept,
                    )
            else:
                body = BodySource(request.content)

        extra = {"X-Request-ID": ex.request_id}
        try:
            upstream_resp = await self._attempt(
                request, upstream, up_path, query, headers, host_header, body, ex
            )
        except UpstreamFailure as failure:
            if not can_fallback:
                return self._failure_response(failure, ex, accept)
            ex.fallback_reason = failure.reason
            log.warning(
                "fallback to legacy on route %s: %s (request %s)",
                ex.route_name,
                failure.reason,
                ex.request_id,
            )
            upstream = config.upstreams[config.default]
            ex.side, ex.upstream = LEGACY, upstream.name
            try:
                upstream_resp = await self._attempt(
                    request, upstream, path, query, headers, host_header, body, ex
                )
            except UpstreamFailure as failure2:
                return self._failure_response(failure2, ex, accept)

        if can_fallback and upstream_resp.status >= 500 and ex.side == EXTRACTED:
            upstream_resp.release()
            ex.fallback_reason = f"status {upstream_resp.status}"
            upstream = config.upstreams[config.default]
            ex.side, ex.upstream = LEGACY, upstream.name
            try:
                upstream_resp = await self._attempt(
                    request, upstream, path, query, headers, host_header, body, ex
                )
            except UpstreamFailure as failure3:
                return self._failure_response(failure3, ex, accept)

        try:
            out, sent = await relay(request, upstream_resp, extra)
            ex.bytes_out = sent
            return out
        except (TimeoutError, aiohttp.ClientError, ConnectionResetError) as exc:
            # Headers are gone already: the only honest signal left is a cut connection.
            log.warning(
                "upstream %s failed mid-response on route %s: %r (request %s)",
                ex.upstream,
                ex.route_name,
                exc,
                ex.request_id,
            )
            abort_connection(request)
            ex.status = 502
            raise
        finally:
            upstream_resp.release()

    def _choose_side(self, route: Route | None) -> str:
        if route is None:
            return LEGACY
        if route.mode == "extracted":
            return EXTRACTED
        if route.mode == "canary":
            return EXTRACTED if random.random() * 100.0 < route.canary.percent else LEGACY
        return LEGACY

    async def _attempt(
        self,
        request: web.BaseRequest,
        upstream: Upstream,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        host_header: str,
        body: bytes | BodySource | None,
        ex: Exchange,
    ) -> aiohttp.ClientResponse:
        """One call to one upstream; failures before a response become `UpstreamFailure`."""
        session = self.pool.session(upstream)
        send_headers = _with_host(headers, upstream.host_header or host_header)
        data: Any = body.chunks() if isinstance(body, BodySource) else body
        ex.attempts += 1
        try:
            return await session.request(
                request.method,
                upstream_url(upstream, path, query),
                headers=send_headers,
                data=data,
                allow_redirects=False,
                timeout=self.pool.timeout(upstream),
                compress=None,
                chunked=None,
            )
        except TimeoutError as exc:
            raise UpstreamFailure(504, f"upstream {upstream.name} timed out") from exc
        except aiohttp.ClientResponseError as exc:
            raise UpstreamFailure(
                502, f"upstream {upstream.name} sent an invalid response: {exc.message}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailure(
                502, f"upstream {upstream.name} unreachable: {exc.__class__.__name__}"
            ) from exc

    def _failure_response(
        self, failure: UpstreamFailure, ex: Exchange, accept: str | None
    ) -> web.Response:
        log.warning("route %s: %s (request %s)", ex.route_name, failure.reason, ex.request_id)
        return error_response(
            failure.status,
            failure.reason,
            route=ex.route_name,
            request_id=ex.request_id,
            accept=accept,
        )


_UPGRADE_KEEP = frozenset({"upgrade", "connection"})


def _is_websocket(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _bare_host(host_header: str) -> str:
    """Lower-case host without port (IPv6 literals keep their brackets)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[: end + 1] if end > 0 else h
    return h.rsplit(":", 1)[0] if ":" in h else h


def _peer(request: web.BaseRequest) -> str:
    transport = request.transport
    if transport is None:
        return ""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""


def _with_host(headers: list[tuple[str, str]], host: str) -> list[tuple[str, str]]:
    out = [h for h in headers if h[0].lower() != "host"]
    if host:
        out.insert(0, ("Host", host))
    return out
