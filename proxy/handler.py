"""The request pipeline, as thin I/O glue over pure stages.

listener → path safety → router → filters (request id, forwarding, tenant) → dispatcher
(which side) → auth check (extracted side) and rate limit → upstream (guard: breaker,
bulkhead, retries; fallback) → ACL → response;
shadow work branches off after the primary answered. Each stage's rules live in its own
module; this one only wires them and turns failures into the responses clients expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp import web

from proxy.aiohttp_lane import answer_in_http11
from proxy.client import Interim, UpstreamProtocolError, UpstreamResponse
from proxy.config.model import (
    IDEMPOTENT_METHODS,
    SAFE_METHODS,
    Limits,
    RateLimit,
    Route,
    Upstream,
)
from proxy.config.templates import rewrite_path
from proxy.dispatch import choose_side, sticky_key
from proxy.edge import EdgeRequest, Refused, admit
from proxy.errors import ALLOWED_METHODS, error_response, options_star_response
from proxy.exchange import EXTRACTED, LEGACY, PROXY, Exchange, loggable_target
from proxy.filters import auth as auth_filter
from proxy.filters.headers import (
    UPGRADE_HEADERS,
    client_address,
    forward_headers,
    is_trusted,
    peer_address,
    request_id,
    rewrite_response_headers,
    routing_view,
)
from proxy.filters.ratelimit import (
    RateLimiter,
    Verdict,
    budget_id,
    gcra_terms,
    header_value,
    limit_key,
    refusal_key,
    reset_header,
    retry_after_header,
    unpaid,
    verdict_for,
)
from proxy.filters.tenant import extract_tenant
from proxy.forward import (
    BodyCapture,
    BodySource,
    ClientBodyError,
    ClientGone,
    UpstreamPool,
    abort_connection,
    buffer_prefix,
    interim_relay,
    last_on_connection,
    relay,
    response_headers,
    whole_body,
)
from proxy.routing import AmbiguousPath, RouteMatch
from proxy.runtime import Runtime, RuntimeHolder
from proxy.shadow.endpoint import endpoint_template
from proxy.shadow.mirror import CLIENT_GONE, PRIMARY_FAILED
from proxy.telemetry.logging import ThrottledWarnings
from proxy.telemetry.tracing import Tracing
from proxy.upstream.caller import Outgoing, Started, UpstreamCaller, UpstreamFailure
from proxy.upstream.registry import GuardRegistry
from proxy.upstream.state import SharedStateDown

log = logging.getLogger("strangler.proxy")

_DECHUNK_LIMIT = 1024 * 1024  # chunked request bodies up to this are sent with a length
_BUFFER_LIMIT = 8 * 1024 * 1024  # bodies buffered for replay (fallback) or translation (ACL)
_REPLAY_LIMIT = 64 * 1024  # idempotent bodies up to this size are kept for retries
_PLAIN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PLAIN_BODY_LIMIT = 64 * 1024  # bodies up to this, with a Content-Length, take the fast lane


@dataclass(slots=True)
class Preflight:
    """What the pure front stages decided about a request the fast lane will serve."""

    runtime: Runtime
    edge: EdgeRequest
    match: RouteMatch | None
    raw_headers: list[tuple[str, str]]
    content_length: int | None  # the body the listener reads whole before the request runs


@dataclass(slots=True)
class PlainPlan:
    """What the fast lane's front stages decided: where to send the request, and how."""

    upstream: Upstream
    up_path: str
    can_fallback: bool
    translator: Any | None
    outgoing: Outgoing
    shadowing: bool  # the mirror admitted a shadow copy of this request


class CutMidResponse(Exception):
    """An upstream failed while its answer was being relayed (a reset, a truncated or
    malformed body, a read timeout): logged and counted as a 502 (504 for the timeout),
    the client connection cut."""


_T = TypeVar("_T")

# What a relay raises when its upstream fails after the answer's head went out.
_MID_RESPONSE = (TimeoutError, aiohttp.ClientError, ConnectionResetError, UpstreamProtocolError)


@dataclass(slots=True)
class Relayed:
    """A response the fast lane already wrote to the client."""

    status: int


class PlainConnection(Protocol):
    """What the fast lane needs from a client connection (`proxy.listener.EdgeConnection`)."""

    peer: str

    def interim_relay(self) -> Interim | None: ...

    async def relay(
        self,
        upstream_resp: UpstreamResponse,
        request_id: str,
        *,
        capture: BodyCapture | None,
        route: str | None,
        ex: Exchange | None = None,
    ) -> tuple[int, int]: ...

    def send_response(self, resp: web.Response) -> None: ...

    def abort(self) -> None: ...


class ExpressConnection(PlainConnection, Protocol):
    """What the express path needs on top (`proxy.listener.EdgeConnection`)."""

    def send_whole(self, upstream_resp: UpstreamResponse, body: bytes, request_id: str) -> None: ...

    def express_pending(self, request: _Express) -> None: ...

    def express_done(self) -> None: ...

    def escalate(self, work: Coroutine[Any, Any, None]) -> None: ...


class ProxyHandler:
    """Callable passed to aiohttp's low-level server."""

    def __init__(
        self,
        holder: RuntimeHolder,
        pool: UpstreamPool,
        *,
        guards: GuardRegistry,
        telemetry: Any | None = None,
        mirror: Any | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.holder = holder
        # Limits bind at startup, like the listener's (a reload logs a change, docs/proxy.md).
        self.limits = limits or holder.current.config.limits
        self.pool = pool
        self.caller = UpstreamCaller(pool, guards, telemetry)
        self.telemetry = telemetry
        self.mirror = mirror
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.websockets: set[Any] = set()  # open proxied WebSockets, closed with 1001 at stop
        self.limiters: dict[tuple[str, RateLimit], RateLimiter] = {}  # survive reloads
        # Give-backs to Redis of clients that left during their auth check (see `_admitted`).
        self._give_backs: set[asyncio.Task[None]] = set()
        self._warnings = ThrottledWarnings(log)  # per-request warnings, per route and kind

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """The aiohttp lane: requests with bodies, upgrades, and anything the edge refuses."""
        resp = await self._run(
            request.method, request.headers, lambda rt, ex: self._handle(request, rt, ex)
        )
        if last_on_connection(request):  # e.g. its chunked body ended with trailer fields
            request.protocol.close()  # aiohttp handles nothing after this request
            if not resp.prepared:
                resp.force_close()  # and says so (a streamed answer: see `relay`)
        return resp

    async def serve_plain(
        self,
        conn: PlainConnection,
        msg: Any,
        pre: Preflight,
        body: bytes = b"",
        *,
        begun: tuple[Exchange, float] | None = None,
        work: Any = None,
    ) -> None:
        """The fast lane (`proxy.listener`): a plain request, answered straight to `conn`.

        `begun` and `work`: the rest of a request the express path began."""
        resp = await self._run(
            msg.method,
            msg.headers,
            work or (lambda rt, ex: self._handle_plain(conn, msg, pre, body, ex)),
            begun,
        )
        if isinstance(resp, web.Response):  # the proxy's own answer (an error)
            conn.send_response(resp)

    async def _run(
        self,
        method: str,
        client_headers: Any,
        work: Any,
        begun: tuple[Exchange, float] | None = None,
    ) -> Any:
        """Both lanes: count in flight, turn unexpected failures into a 500, report the end.

        `begun`: the exchange and start time of a request the express path began."""
        if begun is None:
            ex, started = self._begin(method, client_headers)
        else:
            ex, started = begun
        try:
            resp = await work(self.holder.current, ex)
            ex.status = resp.status
            return resp
        except asyncio.CancelledError:
            ex.status = ex.status or 499  # the client went away
            raise
        except ClientBodyError as exc:
            # The client's body broke its framing or stalled mid-stream; the upstream was cut.
            ex.status, ex.error = exc.status, str(exc)
            return error_response(
                exc.status, str(exc), route=ex.route_name, request_id=ex.request_id, close=True
            )
        except ClientGone:
            # The client left as its answer was being written (found by a write, before
            # the connection's loss cancelled this): 499, as a cancel would say. The answer
            # below goes nowhere.
            ex.status = 499
            return error_response(
                502, "client_gone", route=ex.route_name, request_id=ex.request_id, close=True
            )
        except CutMidResponse:
            # The upstream failed after the head went out: `_cut_mid_response` logged it and
            # set the 502 (or 504), and the client connection is cut, so this answer is never
            # written.
            # Not an internal error: the proxy did what it must.
            return error_response(
                502, "bad_gateway", route=ex.route_name, request_id=ex.request_id, close=True
            )
        except Exception as exc:
            return self._internal_error(ex, exc, client_headers)
        finally:
            self._end(ex, started, client_headers)

    def _begin(self, method: str, client_headers: Any) -> tuple[Exchange, float]:
        self.in_flight += 1
        self.idle.clear()
        started = time.perf_counter()
        return Exchange(request_id(client_headers.get("X-Request-ID")), method, "", None), started

    def refused(
        self,
        status: int,
        reason: str,
        client: str | None,
        bytes_out: int = 0,
        *,
        route: Route | None = None,
        method: str = "-",
        request_id: str | None = None,
        path: str | None = None,
        query: str | None = None,
        duration_s: float = 0.0,
    ) -> None:
        """A request refused before it ran (by aiohttp's parser, or a body that stalled):
        counted and logged as any answer is, so malformed traffic shows in metrics and logs.
        A target the parser refused is not logged (it may be what was malformed, and may
        hold a secret): `path` and `query` only come from a head the edge admitted."""
        if self.telemetry is not None:
            self.telemetry.request_finished(
                route.name if route is not None else None,
                route.mode if route is not None else LEGACY,
                PROXY,
                method,
                status,
                duration_s,
                bytes_out,
                client=client,
                error=reason,
                request_id=request_id,
                path=path,
                query=query,
            )

    def _internal_error(self, ex: Exchange, exc: Exception, client_headers: Any) -> web.Response:
        # Never a stack trace to the client; always one line with the ids in the log.
        ex.status = 500
        ex.error = repr(exc)
        if self.telemetry is not None:
            self.telemetry.error(
                "internal proxy error",
                request_id=ex.request_id,
                trace_id=Tracing.trace_id(ex.span, client_headers),
                exc=exc,
                route=ex.route_name,
            )
        else:
            log.exception(
                "internal error on route %s (request %s)",
                ex.route_name,
                ex.request_id,
                extra={"fields": ex.log_ids()},
            )
        return error_response(
            500, "internal proxy error", route=ex.route_name, request_id=ex.request_id
        )

    def _end(self, ex: Exchange, started: float, client_headers: Any) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()
        if self.telemetry is not None:
            self.telemetry.request_finished(
                ex.route.name if ex.route else None,
                ex.mode,
                ex.side,
                ex.method,
                ex.status,
                time.perf_counter() - started,
                ex.bytes_out,
                upstream=ex.upstream or None,
                request_id=ex.request_id,
                tenant=ex.tenant,
                path=ex.path,
                query=ex.query or None,
                client=ex.client or None,
                fallback=ex.fallback_reason,
                span=ex.span,
                headers=client_headers,
                error=ex.error,
            )

    # -- the pipeline --------------------------------------------------------------------------

    async def _handle(
        self, request: web.BaseRequest, rt: Runtime, ex: Exchange
    ) -> web.StreamResponse:
        accept = request.headers.get("Accept")
        ex.path, ex.query = loggable_target(request.raw_path)
        try:
            raw_headers, edge = _edge(
                request.method,
                request.raw_path,
                request.version,
                request.raw_headers,
                request.headers,
                max_total=self.limits.max_header_total,
            )
        except Refused as refused:
            ex.side = PROXY
            if refused.status == 505:
                answer_in_http11(request)
            answer = error_response(
                refused.status,
                refused.message,
                route=None,
                request_id=ex.request_id,
                accept=accept,
                close=True,
                headers=refused.headers,
            )
            ex.bytes_out = len(answer.body) if isinstance(answer.body, bytes) else 0
            return answer
        if edge.asterisk or edge.max_forwards == 0:
            return options_star_response(ex.request_id)
        path, query, host_header, host = edge.path, edge.query, edge.host_header, edge.host
        ex.path, ex.query = path, query
        try:
            match = rt.table.match(
                request.method, path, host, _routing_headers(rt, raw_headers, request.transport)
            )
        except AmbiguousPath as ambiguous:
            return error_response(
                400, str(ambiguous), route=None, request_id=ex.request_id, accept=accept, close=True
            )
        route = match.route if match else None
        params = match.params if match else {}
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            headers, upstream, up_path = self._front(
                rt,
                ex,
                match,
                edge,
                request.method,
                request.headers,
                raw_headers,
                request.content_length,
                peer=_peer(request.transport),
                scheme=request.scheme,
                cookies=lambda: request.cookies,
                websocket=websocket,
            )
        except RateLimited as limited:
            return self._limited_response(limited, ex, accept)
        if _awaits_admission(rt, route, ex.side):
            refusal = await self._admitted(rt, route, request.method, edge, headers, ex, accept)
            if refusal is not None:
                return refusal

        if websocket:
            from proxy.websocket import proxy_websocket

            answer = await proxy_websocket(
                request,
                self.pool,
                upstream,
                up_path,
                query,
                headers,
                host_header,
                ex,
                max_message=self.limits.websocket_message,
                heartbeat=self.limits.websocket_heartbeat,
                open_sessions=self.websockets,
            )
            if isinstance(answer, web.Response) and isinstance(answer.body, bytes):
                ex.bytes_out = len(answer.body)  # a refused upgrade's answer
            return answer

        translator = rt.translator_for(route) if (route and ex.side == EXTRACTED) else None
        can_fallback = (
            ex.side == EXTRACTED
            and route is not None
            and route.fallback == LEGACY
            and request.method in SAFE_METHODS
        )
        shadowing = (
            route is not None
            and route.mode == "shadow"
            and self.mirror is not None
            and self.mirror.admit(route, request.method, request.content_length)
        )

        # request body: stream unless something must see it whole or send it twice
        body: bytes | BodySource | None = None
        if request.body_exists:
            idle = self.limits.idle_timeout  # the client may pause its body this long (as at start)
            if edge.expect_continue and not (
                request.content.total_bytes or request.content.is_eof()
            ):
                # Only to a client still waiting: one that sent its body with the head (all
                # or part) is not, and would read the 100 as an answer to nothing (RFC 9110
                # §10.1.1 lets a server omit it then).
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            # A small body of an idempotent request is kept so a retry can send it again.
            replayable = (
                request.method in IDEMPOTENT_METHODS
                and upstream.retry.retries > 0
                and request.content_length is not None
                and request.content_length <= _REPLAY_LIMIT
            )
            if translator is not None or can_fallback or shadowing or replayable:
                limit = route.shadow.max_body if shadowing and route else _BUFFER_LIMIT
                try:
                    prefix, rest = await buffer_prefix(request.content, limit, idle)
                except asyncio.CancelledError:  # the client left mid-body
                    if shadowing:
                        self._shadow_lost(ex, CLIENT_GONE)
                    raise
                if rest is None:
                    body = prefix
                elif translator is not None or can_fallback:
                    return error_response(
                        413,
                        f"request body over {_BUFFER_LIMIT} bytes on a route that must buffer it"
                        " (ACL translation or fallback)",
                        route=ex.route_name,
                        request_id=ex.request_id,
                        accept=accept,
                    )
                else:  # too big to shadow: serve it, stream the rest, skip the shadow
                    shadowing = False
                    if route is not None:
                        self.mirror.drop(route.name, "body_too_large")
                    body = BodySource(request.content, prefix=prefix, idle=idle)
            elif request.content_length is None:
                # A chunked body. WSGI servers (Django under gunicorn) read CONTENT_LENGTH
                # and would see no body at all: de-chunk what fits, as nginx does.
                prefix, rest = await buffer_prefix(request.content, _DECHUNK_LIMIT, idle)
                if rest is None:
                    body = prefix
                else:
                    body = BodySource(request.content, prefix=prefix, idle=idle)
            else:
                body = BodySource(request.content, idle=idle)

        if translator is not None:
            return await self._translated(
                request.method,
                request.headers.get("Accept"),
                lambda resp: self._relay_or_cut(
                    relay(request, resp, {"X-Request-ID": ex.request_id}, ex=ex),
                    ex,
                    lambda: abort_connection(request),
                ),
                rt,
                translator,
                upstream,
                up_path,
                query,
                headers,
                host_header,
                body if isinstance(body, bytes) else b"",
                params,
                ex,
                can_fallback,
            )

        # upstream, with fallback to legacy for safe requests the extracted side failed
        call_started = time.perf_counter()
        outgoing = Outgoing(request.method, headers, host_header, body, interim_relay(request))
        try:
            upstream_resp = await self._send(
                outgoing, upstream, up_path, query, rt, ex, can_fallback
            )
        except UpstreamFailure as failure:
            if shadowing:
                self._shadow_lost(ex, PRIMARY_FAILED)
            return self._failure_response(failure, ex, accept)
        except asyncio.CancelledError:  # the client left before the primary answered
            if shadowing:
                self._shadow_lost(ex, CLIENT_GONE)
            raise

        capture = self._capture() if shadowing else None
        relayed = False
        lost = CLIENT_GONE  # why no comparison, if the relay does not end
        try:
            out, sent = await relay(
                request,
                upstream_resp,
                {"X-Request-ID": ex.request_id},
                capture=capture,
                route=ex.route_name,
                ex=ex,
            )
            ex.bytes_out = sent
            relayed = True
        except ClientGone:
            raise  # the client left, no upstream failed (`_run` says 499)
        except _MID_RESPONSE as exc:
            # Headers are gone already: the only honest signal left is a cut connection.
            lost = PRIMARY_FAILED
            self._cut_mid_response(ex, exc)
            abort_connection(request)
            raise CutMidResponse from exc
        finally:
            upstream_resp.release()
            if capture is not None and not relayed:
                capture.release()  # cut short or cancelled: nothing will be compared
                self._shadow_lost(ex, lost)
        if capture is not None and route is not None:
            self._queue_shadow(
                route,
                request.method,
                request.host,
                path,
                params,
                query,
                headers,
                body,
                upstream_resp,
                capture,
                time.perf_counter() - call_started,
                ex,
            )
        return out

    # -- the fast lane -------------------------------------------------------------------------

    def preflight(self, msg: Any, peer: str = "") -> Preflight | None:
        """Whether the fast lane may serve this parsed request head, and the stages' verdicts.

        Pure but for reading the current runtime. None sends the request (and its connection)
        to the aiohttp lane: chunked or large bodies (streamed there), upgrades, `Expect`,
        anything the edge refuses (that lane writes the refusal).
        """
        if msg.method not in _PLAIN_METHODS or msg.upgrade or msg.chunked:
            return None
        client_headers = msg.headers
        if (
            "Transfer-Encoding" in client_headers
            or "Upgrade" in client_headers  # the aiohttp lane accepts or refuses upgrades
        ):
            return None
        content_length = None
        if "Content-Length" in client_headers:
            lengths = client_headers.getall("Content-Length")
            if len(lengths) != 1 or not lengths[0].isdigit():  # llhttp refused worse already
                return None
            content_length = int(lengths[0])
            if content_length > PLAIN_BODY_LIMIT:
                return None
        try:
            raw_headers, edge = _edge(
                msg.method, msg.path, msg.version, msg.raw_headers, client_headers
            )
        except Refused:
            return None
        if edge.asterisk or edge.expect_continue or edge.max_forwards == 0:
            return None
        rt = self.holder.current
        try:
            names = rt.table.header_names
            routed_on = (
                routing_view(raw_headers, names, trusted=is_trusted(peer, rt.trusted))
                if names
                else _NO_HEADERS
            )
            match = rt.table.match(msg.method, edge.path, edge.host, routed_on)
        except AmbiguousPath:
            return None  # the aiohttp lane answers it
        return Preflight(rt, edge, match, raw_headers, content_length)

    async def _handle_plain(
        self, conn: PlainConnection, msg: Any, pre: Preflight, body: bytes, ex: Exchange
    ) -> Any:
        """`_handle` for a request whose body (if any) the listener read whole, answered
        straight to the client connection."""
        try:
            plan = self._plain_front(conn, msg, pre, body, ex)
        except RateLimited as limited:
            return self._limited_response(limited, ex, msg.headers.get("Accept"))
        route = pre.match.route if pre.match else None
        if _awaits_admission(pre.runtime, route, ex.side):
            refusal = await self._admitted(
                pre.runtime,
                route,
                msg.method,
                pre.edge,
                plan.outgoing.headers,
                ex,
                msg.headers.get("Accept"),
            )
            if refusal is not None:
                return refusal
        if plan.translator is not None:
            match = pre.match

            async def relay_legacy(resp: UpstreamResponse) -> tuple[Relayed, int]:
                status, sent = await self._relay_or_cut(
                    conn.relay(resp, ex.request_id, capture=None, route=ex.route_name, ex=ex),
                    ex,
                    conn.abort,
                )
                return Relayed(status), sent

            return await self._translated(
                msg.method,
                msg.headers.get("Accept"),
                relay_legacy,
                pre.runtime,
                plan.translator,
                plan.upstream,
                plan.up_path,
                pre.edge.query,
                plan.outgoing.headers,
                pre.edge.host_header,
                body,
                match.params if match else {},
                ex,
                plan.can_fallback,
            )
        return await self._plain_call(conn, msg, pre, body, ex, plan)

    def _plain_front(
        self, conn: PlainConnection, msg: Any, pre: Preflight, body: bytes, ex: Exchange
    ) -> PlainPlan:
        """The fast lane's front stages: filters and dispatcher, then what to send."""
        rt, edge, match = pre.runtime, pre.edge, pre.match
        ex.path, ex.query = edge.path, edge.query
        route = match.route if match else None
        client_headers = msg.headers
        headers, upstream, up_path = self._front(
            rt,
            ex,
            match,
            edge,
            msg.method,
            client_headers,
            pre.raw_headers,
            pre.content_length,
            peer=conn.peer,
            scheme="http",
            cookies=lambda: _cookies(client_headers),
        )
        can_fallback = (
            ex.side == EXTRACTED
            and route is not None
            and route.fallback == LEGACY
            and msg.method in SAFE_METHODS
        )
        translator = rt.translator_for(route) if (route and ex.side == EXTRACTED) else None
        outgoing = Outgoing(
            msg.method, headers, edge.host_header, body or None, conn.interim_relay()
        )
        shadowing = (
            translator is None
            and route is not None
            and route.mode == "shadow"
            and self.mirror is not None
            and self.mirror.admit(route, msg.method, pre.content_length)
        )
        return PlainPlan(upstream, up_path, can_fallback, translator, outgoing, shadowing)

    async def _plain_call(
        self,
        conn: PlainConnection,
        msg: Any,
        pre: Preflight,
        body: bytes,
        ex: Exchange,
        plan: PlainPlan,
        started: Started | None = None,
    ) -> Any:
        """Call the upstream and relay its answer; `started`: the express path's first
        attempt, already admitted and written."""
        edge = pre.edge
        call_started = time.perf_counter() if started is None else started.at
        try:
            upstream_resp = await self._send(
                plan.outgoing,
                plan.upstream,
                plan.up_path,
                edge.query,
                pre.runtime,
                ex,
                plan.can_fallback,
                started=started,
            )
        except UpstreamFailure as failure:
            if plan.shadowing:
                self._shadow_lost(ex, PRIMARY_FAILED)
            return self._failure_response(failure, ex, msg.headers.get("Accept"))
        except asyncio.CancelledError:  # the client left before the primary answered
            if plan.shadowing:
                self._shadow_lost(ex, CLIENT_GONE)
            raise
        capture = self._capture() if plan.shadowing else None
        relayed = False
        lost = CLIENT_GONE  # why no comparison, if the relay does not end
        try:
            status, ex.bytes_out = await conn.relay(
                upstream_resp, ex.request_id, capture=capture, route=ex.route_name, ex=ex
            )
            relayed = True
        except ClientGone:
            raise  # the client left, no upstream failed (`_run` says 499)
        except _MID_RESPONSE as exc:
            lost = PRIMARY_FAILED
            self._cut_mid_response(ex, exc)
            conn.abort()
            raise CutMidResponse from exc
        finally:
            upstream_resp.release()
            if capture is not None and not relayed:
                capture.release()  # cut short or cancelled: nothing will be compared
                self._shadow_lost(ex, lost)
        if capture is not None:
            self._submit_shadow(pre, plan, body, upstream_resp, capture, call_started, ex)
        return Relayed(status)

    # -- the express path: the fast lane without a task -------------------------------------

    def serve_express(self, conn: ExpressConnection, msg: Any, pre: Preflight, body: bytes) -> bool:
        """Serve a plain request without a task when it can be: False leaves it to
        `serve_plain` (nothing was done), True means `conn` hears back (`express_done`, or
        `escalate` with the coroutine that finishes the request).

        The same stages as `serve_plain`, in the same order; only the waiting differs. The
        first attempt is admitted and written at once (`UpstreamCaller.start`), and when
        the response is then wholly in (a final status below 500, a small body, complete),
        it is relayed from the upstream connection's read callback. Anything else (no
        idle connection, a breaker not closed, an interim or 5xx response, a body still
        arriving, a failure) continues as a task in `_plain_call`, exactly where
        `serve_plain` would be, so retries, fallback and errors behave the same.
        """
        route = pre.match.route if pre.match else None
        if route is not None and pre.runtime.translator_for(route) is not None:
            return False
        auth = pre.runtime.config.auth
        if auth is not None and auth_filter.may_apply(auth, route):
            return False  # the check is awaited: `serve_plain` does it
        if route is not None and route.rate_limit is not None and route.rate_limit.shared:
            return False  # so is Redis
        client_headers = msg.headers
        ex, started = self._begin(msg.method, client_headers)
        begun = (ex, started)
        try:
            plan = self._plain_front(conn, msg, pre, body, ex)
            first = self.caller.start(plan.outgoing, plan.upstream, plan.up_path, ex.query, ex)
        except RateLimited as limited:
            accept = client_headers.get("Accept")
            conn.send_response(self._limited_response(limited, ex, accept))
            self._end(ex, started, client_headers)
            conn.express_done()
            return True
        except Exception as exc:  # noqa: BLE001 - as `_run` answers it
            conn.send_response(self._internal_error(ex, exc, client_headers))
            self._end(ex, started, client_headers)
            conn.express_done()
            return True

        request = _Express(self, conn, msg, pre, body, ex, begun, plan, first)
        if first is None:
            conn.escalate(request.finish(None))
            return True
        conn.express_pending(request)
        first.pending.on_response(request.on_response)
        return True

    # -- stages --------------------------------------------------------------------------------

    def _front(
        self,
        rt: Runtime,
        ex: Exchange,
        match: RouteMatch | None,
        edge: EdgeRequest,
        method: str,
        client_headers: Any,
        raw_headers: list[tuple[str, str]],
        content_length: int | None,
        *,
        peer: str,
        scheme: str,
        cookies: Callable[[], Mapping[str, str]],
        websocket: bool = False,
    ) -> tuple[list[tuple[str, str]], Upstream, str]:
        """Router result → filters → dispatcher, the same for both lanes.

        Records who is asking (client, tenant, span) on `ex` and returns the headers to
        forward, the upstream that answers (`ex.side`) and the path it is asked for.
        """
        route = match.route if match else None
        config = rt.config
        ex.route = route

        # filters
        trusted = is_trusted(peer, rt.trusted)
        ex.client = _client_ip(client_headers, peer, rt, trusted)
        ex.client_headers = client_headers
        telemetry = self.telemetry
        if telemetry is not None and telemetry.tracing.enabled:
            ex.span = telemetry.start_server_span(
                client_headers,
                method,
                edge.path,
                route,
                scheme=scheme,
                server_address=edge.host or None,
                host_header=edge.host_header,
                client_address=ex.client or None,
            )
        headers = forward_headers(
            raw_headers,
            peer=peer,
            scheme=scheme,
            host=edge.host_header,
            trusted=trusted,
            request_id=ex.request_id,
            content_length=content_length,
            drop=rt.client_drop,
            keep=UPGRADE_HEADERS if websocket else frozenset(),
            max_forwards=edge.max_forwards,
        )
        ex.tenant = extract_tenant(
            config.tenant, headers=headers, host=edge.host, jwt_key=rt.tenant_keys
        )

        # dispatcher
        side = LEGACY
        if route is not None and route.target is not None:
            key = None
            if route.mode == "canary" and route.canary.sticky:
                key = sticky_key(
                    route,
                    headers=client_headers,
                    cookies=cookies(),
                    tenant=ex.tenant,
                    client_ip=ex.client,
                )
            side = choose_side(route, tenant=ex.tenant, sticky_key=key, rand=random.random())
        if side == EXTRACTED:
            assert route is not None and route.target is not None
            upstream = config.upstreams[route.target]
            up_path = rewrite_path(route, edge.path, match.params if match else {})
        else:
            upstream, up_path = config.upstreams[config.default], edge.path
        ex.side, ex.upstream = side, upstream.name
        # A request the auth check will see is counted after it (`_admitted`): a refused
        # one spends its address's refusal budget, never the tenant's or header's it names,
        # and a `header:` key can be one the check vouches for. A shared budget is awaited
        # there too.
        if (
            route is not None
            and route.rate_limit is not None
            and not _awaits_admission(rt, route, side)
        ):
            self._rate_limit(route, route.rate_limit, ex, headers)
        return headers, upstream, up_path

    async def _send(
        self,
        outgoing: Outgoing,
        upstream: Upstream,
        path: str,
        query: str | None,
        rt: Runtime,
        ex: Exchange,
        can_fallback: bool,
        *,
        as_legacy: Outgoing | None = None,
        started: Started | None = None,
    ) -> UpstreamResponse:
        """Call the chosen upstream; a safe request the extracted side fails (refused, timed
        out, 5xx, breaker open) is served by legacy instead, sent as `as_legacy` when the
        extracted call was translated. Raises `UpstreamFailure` when nobody could answer."""
        try:
            resp = await self.caller.call(outgoing, upstream, path, query, ex, started=started)
            if not (can_fallback and resp.status >= 500):
                return _with_route_headers(ex.route, resp)
            resp.release()
            raise UpstreamFailure(resp.status, f"upstream {upstream.name} answered {resp.status}")
        except UpstreamFailure as failure:
            if not can_fallback:
                raise
            return await self._fall_back(rt, ex, failure, as_legacy or outgoing)

    async def _fall_back(
        self, rt: Runtime, ex: Exchange, failure: UpstreamFailure, outgoing: Outgoing
    ) -> UpstreamResponse:
        """Legacy answers what the extracted side failed (with the route's response headers,
        as any answer on the route); raises if it fails too."""
        self._warnings.warn(
            ("fallback", ex.route_name),
            "fallback to legacy on route %s: %s (request %s)",
            ex.route_name,
            failure.reason,
            ex.request_id,
            fields=ex.log_ids(),
        )
        if self.telemetry is not None:
            self.telemetry.count("fallback", route=ex.route_name, reason=failure.label)
        legacy = rt.config.upstreams[rt.config.default]
        ex.side, ex.upstream, ex.fallback_reason = LEGACY, legacy.name, failure.reason
        resp = await self.caller.call(outgoing, legacy, ex.path, ex.query, ex, fallback=True)
        return _with_route_headers(ex.route, resp)

    async def _translated(
        self,
        method: str,
        accept: str | None,
        relay_legacy: Callable[[UpstreamResponse], Awaitable[tuple[Any, int]]],
        rt: Runtime,
        translator: Any,
        upstream: Upstream,
        up_path: str,
        query: str | None,
        headers: list[tuple[str, str]],
        host_header: str,
        body: bytes,
        params: Any,
        ex: Exchange,
        can_fallback: bool,
    ) -> Any:
        """An extracted call through the route's ACL: legacy request → new, new response → legacy.

        Both lanes: `relay_legacy` passes on a legacy answer (after a fallback) untranslated;
        anything else is answered with a `web.Response`.
        """
        from acl.translator import NoEndpoint, TranslationError
        from acl.wire import request_message, translate_request, translate_response

        try:
            wire = translate_request(translator, method, ex.path, query, headers, body, params)
        except NoEndpoint as exc:
            # The translator does not cover this method and path (`/api/customers/abc`
            # where it knows `{id:int}`): the path's owner before extraction answers it.
            original = Outgoing(method, headers, host_header, body or None)
            legacy = rt.config.upstreams[rt.config.default]
            ex.side, ex.upstream, ex.fallback_reason = LEGACY, legacy.name, str(exc.message)
            try:
                resp = await self.caller.call(original, legacy, ex.path, query, ex, fallback=True)
            except UpstreamFailure as failure:
                return self._failure_response(failure, ex, accept)
            _with_route_headers(ex.route, resp)
            try:
                out, ex.bytes_out = await relay_legacy(resp)
                return out
            finally:
                resp.release()
        except TranslationError as exc:
            return self._translation_failure(exc, ex, translator)
        # The translator may route the call itself; otherwise the route's `rewrite` applies.
        new_path = wire.path if wire.path != ex.path else up_path
        # Translation needs the plain body.
        send_headers = [(k, v) for k, v in wire.headers if k.lower() != "accept-encoding"]
        send_headers.append(("Accept-Encoding", "identity"))
        # A HEAD answer carries the headers GET's would (Content-Length, Content-Type), and
        # those are the translated body's: the service is asked GET, the body is not sent.
        new_method = "GET" if method == "HEAD" else method
        translated = Outgoing(new_method, send_headers, host_header, wire.body or None)
        original = Outgoing(method, headers, host_header, body or None)
        try:
            resp = await self._send(
                translated, upstream, new_path, wire.query, rt, ex, can_fallback, as_legacy=original
            )
            if ex.side == EXTRACTED:
                try:
                    raw, too_big = await buffer_prefix(resp.content, _BUFFER_LIMIT)
                except (TimeoutError, aiohttp.ClientError, OSError, UpstreamProtocolError) as exc:
                    resp.release()
                    failure = UpstreamFailure(
                        504 if isinstance(exc, TimeoutError) else 502,
                        f"upstream {upstream.name} failed mid-body: {exc.__class__.__name__}",
                        error=exc,
                    )
                    if not can_fallback:
                        raise failure from None
                    resp = await self._fall_back(rt, ex, failure, original)
        except UpstreamFailure as failure:
            return self._failure_response(failure, ex, accept)
        if ex.side == LEGACY:  # fell back: legacy already answers in the legacy model
            try:
                out, ex.bytes_out = await relay_legacy(resp)
                return out
            finally:
                resp.release()
        resp_headers = list(response_headers(resp).items())
        resp.release()
        if too_big:
            failure = UpstreamFailure(
                502, f"upstream {upstream.name} answered over {_BUFFER_LIMIT} bytes to translate"
            )
            return self._failure_response(failure, ex, accept)
        legacy_request = request_message(method, ex.path, query, headers, body)
        try:
            legacy = translate_response(translator, resp.status, resp_headers, raw, legacy_request)
        except TranslationError as exc:
            return self._translation_failure(exc, ex, translator)
        out = web.Response(status=legacy.status, body=legacy.body)  # HEAD: its size, no body
        for k, v in legacy.headers:
            if k.lower() != "content-length":
                out.headers.add(k, v)
        _set_route_headers(ex.route, out)
        out.headers["X-Request-ID"] = ex.request_id
        ex.bytes_out = len(legacy.body) if method != "HEAD" else 0
        return out

    def _translation_failure(self, exc: Any, ex: Exchange, translator: Any) -> web.Response:
        """502 naming translator, direction and field path; or the monolith's own 4xx answer.
        Either is written as the monolith writes JSON (the translator's `legacy_json`), typed
        as translated answers are (`application/json`, no charset parameter)."""
        from acl.translator import RequestRejected
        from acl.wire import error_response as acl_error_response

        ex.error = str(exc)
        rejected = isinstance(exc, RequestRejected)
        if not rejected:  # the operator's line names the file too (the client's does not)
            log.error(
                "ACL translation failed on route %s: %s (translator %s from %s; request %s)",
                ex.route_name,
                exc,
                getattr(translator, "name", "?"),
                getattr(translator, "source", "?"),
                ex.request_id,
                extra={"fields": ex.log_ids()},
            )
        extra = {"route": ex.route_name, "request_id": ex.request_id}
        wire = acl_error_response(exc, translator, extra)
        answer = web.Response(status=wire.status, body=wire.body)
        for k, v in wire.headers:
            if k.lower() != "content-length":
                answer.headers[k] = v
        answer.headers["X-Request-ID"] = ex.request_id
        if rejected:  # answered as the monolith would: its headers too
            _set_route_headers(ex.route, answer)
        ex.bytes_out = len(wire.body) if ex.method != "HEAD" else 0
        return answer

    def _capture(self) -> BodyCapture:
        """Where a shadowed answer is kept while relayed, its bytes counted against the
        mirror's memory budget (`shadow.max_memory`) as they arrive."""
        hold = self.mirror.hold() if self.mirror is not None else None
        return BodyCapture(_BUFFER_LIMIT, hold)

    def _shadow_lost(self, ex: Exchange, reason: str) -> None:
        """An admitted comparison that cannot be made (the primary gave no whole answer, or
        the client left before it had one): counted as dropped, so that every request
        sampled in shows up in the shadow report."""
        if self.mirror is not None and ex.route_name is not None:
            self.mirror.drop(ex.route_name, reason)

    def _submit_shadow(
        self,
        pre: Preflight,
        plan: PlainPlan,
        body: bytes,
        primary: UpstreamResponse,
        capture: BodyCapture,
        call_started: float,
        ex: Exchange,
    ) -> None:
        """`_queue_shadow` for the fast lane (both ways, task or express). The answer is out
        already: a failure here is logged, never answered a second time."""
        if ex.route is None:
            return
        try:
            self._queue_shadow(
                ex.route,
                plan.outgoing.method,
                pre.edge.host_header,
                pre.edge.path,
                pre.match.params if pre.match else {},
                pre.edge.query,
                plan.outgoing.headers,
                body,
                primary,
                capture,
                time.perf_counter() - call_started,
                ex,
            )
        except Exception:  # noqa: BLE001
            log.exception(
                "shadow: queuing the comparison failed (request %s)",
                ex.request_id,
                extra={"fields": ex.log_ids()},
            )

    def _queue_shadow(
        self,
        route: Route,
        method: str,
        host_header: str,
        path: str,
        params: Mapping[str, str],
        query: str | None,
        headers: list[tuple[str, str]],
        body: bytes | BodySource | None,
        primary: UpstreamResponse,
        capture: BodyCapture,
        latency: float,
        ex: Exchange,
    ) -> None:
        """Queue the shadow comparison of a relayed answer (unless its body was too big, or
        did not fit in the shadow memory budget). The capture's bytes go to the mirror with
        the job, or back to the budget here."""
        try:
            auth = self.holder.current.config.auth
            if auth is not None and route.auth and primary.status in (401, 403):
                # The monolith refused the client, and `auth` would have kept the request from
                # the service: its answer to it (data for someone unauthenticated) is nothing to
                # compare, and nothing to keep in the diff store.
                if self.mirror is not None:
                    self.mirror.drop(route.name, "unauthenticated")
                return
            primary_body = capture.body()
            if primary_body is None:  # the answer outgrew what is kept, or never came whole
                if self.mirror is not None:
                    if capture.failed:
                        reason = PRIMARY_FAILED
                    elif capture.out_of_memory:
                        reason = "memory_full"
                    else:
                        reason = "primary_too_large"
                    self.mirror.drop(route.name, reason)
                return
            candidate_path = rewrite_path(route, path, params)
            from proxy.shadow.model import CapturedResponse, ShadowRequest, headers_of

            shadow_headers = [h for h in headers if h[0].lower() != "host"] + [
                ("host", host_header)
            ]
            if self.telemetry is not None:
                self.telemetry.inject(ex.span, shadow_headers)  # the shadow call joins the trace
            shadow_request = ShadowRequest(
                method=method,
                path=path,
                query=query,
                headers=headers_of(shadow_headers),
                body=body if isinstance(body, bytes) else b"",
                candidate_path=candidate_path if candidate_path != path else None,
            )
            captured = CapturedResponse(
                status=primary.status,
                headers=headers_of(response_headers(primary).items()),
                body=primary_body,
                latency=latency,
            )
            self.mirror.submit(
                route,
                endpoint_template(route, path),
                shadow_request,
                captured,
                ex.request_id,
                admitted=True,
                hold=capture.take_hold(),
            )
        finally:
            capture.release()  # nothing left to give back if the mirror took the hold

    async def _admitted(
        self,
        rt: Runtime,
        route: Route | None,
        method: str,
        edge: EdgeRequest,
        headers: list[tuple[str, str]],
        ex: Exchange,
        accept: str | None,
    ) -> web.Response | None:
        """The auth check (if the request gets one), then the route's rate limit: None when
        the request goes on."""
        policy = route.rate_limit if route is not None else None
        try:
            if auth_filter.applies(rt.config.auth, route, ex.side == EXTRACTED):
                # Credential guessing is throttled: an address whose refused attempts spent
                # the route's budget is not asked about again until it recovers. Each check
                # takes one attempt from that budget before it is asked, and gets it back
                # unless refused: looking first and spending after a refusal let a client's
                # concurrent guesses all pass the look (100 at once: 67 checks, burst 3).
                reserved: bool | None = None
                taken_at = 0.0
                if policy is not None:
                    reserved = await self._spend(route, policy, refusal_key(ex.client))
                    taken_at = time.monotonic()
                uri = edge.path if edge.query is None else f"{edge.path}?{edge.query}"
                try:
                    refusal = await self._authorize(
                        rt, method, uri, headers, edge.host_header, ex, accept
                    )
                except asyncio.CancelledError:
                    # The client left during the check: no refused attempt. A cancelled
                    # task cannot wait for Redis: the give-back goes on in a task of its own.
                    if reserved is not None:
                        assert route is not None and policy is not None
                        key = refusal_key(ex.client)
                        if reserved:
                            task = asyncio.get_running_loop().create_task(
                                self._give_back(route, policy, key, True, taken_at)
                            )
                            self._give_backs.add(task)
                            task.add_done_callback(self._give_backs.discard)
                        else:
                            self._give_back_here(route, policy, key, taken_at)
                    raise
                # Accepted, or the check unavailable (5xx): not a refused attempt.
                if reserved is not None and (refusal is None or refusal.status >= 500):
                    assert route is not None and policy is not None
                    await self._give_back(route, policy, refusal_key(ex.client), reserved, taken_at)
                if refusal is not None:
                    return refusal
            if policy is None:
                return None
            if policy.shared:
                await self._spend(route, policy, _limit_key(policy, ex, headers))
            else:
                self._rate_limit(route, policy, ex, headers)
        except RateLimited as limited:
            return self._limited_response(limited, ex, accept)
        return None

    def _rate_limit(
        self, route: Route, policy: RateLimit, ex: Exchange, headers: list[tuple[str, str]]
    ) -> None:
        """Count the request against the route's limit; raise `RateLimited` past it.
        `headers` as forwarded: a `header:` key reads what the upstream will see (for a
        checked request, the value the auth check vouched for)."""
        self._local_limit(route, policy, _limit_key(policy, ex, headers))

    def _limiter(self, route: Route, policy: RateLimit) -> RateLimiter:
        limiter = self.limiters.get((route.name, policy))
        if limiter is None:
            if len(self.limiters) > 1000:  # policies of long-gone tables
                self.limiters.clear()
            limiter = self.limiters[(route.name, policy)] = RateLimiter(policy)
        return limiter

    def _local_limit(self, route: Route, policy: RateLimit, key: str) -> None:
        verdict = self._limiter(route, policy).take(key, time.monotonic())
        if verdict is not None:
            raise RateLimited(verdict)

    async def _spend(self, route: Route, policy: RateLimit, key: str) -> bool:
        """Count a request against `key`'s budget on the route; raise `RateLimited` past
        it. A `shared` budget is the one every replica spends (in the `state:` Redis),
        counted in this process alone while Redis cannot answer. True when Redis counted
        it (where `_give_back` must return it)."""
        state = self.caller.guards.state if policy.shared else None
        if state is not None:
            try:
                waited = await state.take_budget(
                    budget_id(route.name, policy, key), *gcra_terms(policy)
                )
            except SharedStateDown:
                pass
            else:
                if waited is not None:
                    raise RateLimited(verdict_for(policy, *waited))
                return True
        if policy.shared and self.telemetry is not None:
            self.telemetry.count("rate_limit_local", route=route.name)
        self._local_limit(route, policy, key)
        return False

    async def _give_back(
        self, route: Route, policy: RateLimit, key: str, shared: bool, taken_at: float
    ) -> None:
        """Return the request `_spend` counted against `key` at `taken_at` (in Redis when
        `shared`, else in this process), less what time has paid back since (`unpaid`); a
        give-back Redis cannot take leaves the request spent."""
        if not shared:
            self._give_back_here(route, policy, key, taken_at)
            return
        state = self.caller.guards.state
        interval, tolerance = gcra_terms(policy)
        amount = unpaid(interval, time.monotonic() - taken_at)
        if state is None or amount <= 0:
            return
        with contextlib.suppress(SharedStateDown):
            await state.take_budget(
                budget_id(route.name, policy, key), interval, tolerance, give_back=amount
            )

    def _give_back_here(self, route: Route, policy: RateLimit, key: str, taken_at: float) -> None:
        """`_give_back` for a request this process counted."""
        limiter = self._limiter(route, policy)
        now = time.monotonic()
        amount = unpaid(limiter.interval, now - taken_at)
        if amount > 0:
            limiter.give_back(key, now, amount)

    def _limited_response(
        self, limited: RateLimited, ex: Exchange, accept: str | None
    ) -> web.Response:
        verdict = limited.verdict
        ex.status, ex.error = 429, "rate limited"
        ex.side, ex.upstream = PROXY, ""  # answered here: no upstream was called
        answer = error_response(
            429,
            f"too many requests on route {ex.route_name}; retry after "
            f"{retry_after_header(verdict)} s",
            route=ex.route_name,
            request_id=ex.request_id,
            accept=accept,
            headers={
                "Retry-After": retry_after_header(verdict),
                "RateLimit-Limit": str(verdict.limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": reset_header(verdict),
            },
        )
        ex.bytes_out = len(answer.body) if isinstance(answer.body, bytes) else 0
        return answer

    async def _authorize(
        self,
        rt: Runtime,
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        host_header: str,
        ex: Exchange,
        accept: str | None,
    ) -> web.Response | None:
        """Ask `auth.upstream` whether the client may have this request answered by an
        extracted service. None: yes, and `headers` (as forwarded) got the answer's `copy`
        headers. Otherwise the answer for the client: the check's own refusal (its 401,
        403, redirect to a login page), or a 503 when no verdict could be had (fail closed)."""
        auth = rt.config.auth
        assert auth is not None
        upstream = rt.config.upstreams[auth.upstream]
        send = auth_filter.check_headers(
            auth, headers, method=method, uri=uri, host=upstream.host_header or host_header
        )
        # Traced and counted as an attempt (the IdP sees the proxy's span as its parent),
        # but outside the upstream's guard: a failing check must not open the breaker of
        # the monolith that serves everything else, nor be retried into a brownout.
        check = Outgoing("GET", send, upstream.host_header or host_header, None)
        target, check_headers, span = self.caller.prepare(check, upstream, auth.path, None, ex)
        telemetry = self.telemetry
        limit = upstream.timeout.total or upstream.timeout.read or 30.0
        try:
            async with asyncio.timeout(limit):
                resp = await self.pool.pool(upstream).request("GET", target, check_headers, None)
                try:
                    body, too_big = await buffer_prefix(resp.content, auth_filter.ANSWER_LIMIT)
                finally:
                    resp.release()
        except (TimeoutError, aiohttp.ClientError, OSError, UpstreamProtocolError) as exc:
            if telemetry is not None:
                telemetry.attempt_finished(span, upstream.name, None, error=exc)
            why = "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
            return self._auth_unavailable(auth, why, ex, accept)
        except asyncio.CancelledError:  # the client left during the check
            if telemetry is not None:
                telemetry.attempt_finished(span, upstream.name, None, error="cancelled")
            raise
        if telemetry is not None:
            telemetry.attempt_finished(span, upstream.name, resp.status)
        answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers]
        if auth_filter.allowed(resp.status):
            headers.extend(auth_filter.copied(auth, answer))
            return None
        if resp.status >= 500 or resp.status < 200 or too_big:
            why = "an answer too large" if too_big else f"status {resp.status}"
            return self._auth_unavailable(auth, why, ex, accept)
        ex.error = f"authentication check answered {resp.status}"
        ex.side, ex.upstream = PROXY, upstream.name  # the check's answer; the target never saw it
        refusal = web.Response(status=resp.status, body=body if method != "HEAD" else None)
        for name, value in auth_filter.refusal_headers(answer):
            refusal.headers.add(name, value)
        refusal.headers["X-Request-ID"] = ex.request_id
        ex.bytes_out = len(body)
        return refusal

    async def _relay_or_cut(
        self, relaying: Awaitable[_T], ex: Exchange, abort: Callable[[], None]
    ) -> _T:
        """A relay whose failure after the head went out cuts the client connection (what
        `_handle` and `_plain_call` do around theirs): for the legacy answers an ACL route
        passes on untranslated."""
        try:
            return await relaying
        except ClientGone:
            raise  # the client left, no upstream failed (`_run` says 499)
        except _MID_RESPONSE as exc:
            self._cut_mid_response(ex, exc)
            abort()
            raise CutMidResponse from exc

    def _cut_mid_response(self, ex: Exchange, exc: BaseException) -> None:
        """An upstream failed after the answer's head was sent: the connection gets cut."""
        log.warning(
            "upstream %s failed mid-response on route %s: %r (request %s)",
            ex.upstream,
            ex.route_name,
            exc,
            ex.request_id,
            extra={"fields": ex.log_ids()},
        )
        # What it would have been before the head went out: a read that timed out is 504.
        timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)
        ex.status, ex.error = 504 if timed_out else 502, f"mid-response: {exc!r}"

    def _auth_unavailable(
        self, auth: Any, why: str, ex: Exchange, accept: str | None
    ) -> web.Response:
        """No verdict from the auth check: 503, fail closed. The client is told which
        upstream failed, never the check's path (its query may hold a key) or address."""
        path = auth.path.partition("?")[0]
        failure = UpstreamFailure(503, f"authentication check by upstream {auth.upstream} failed")
        ex.side, ex.upstream = PROXY, auth.upstream
        self._warnings.warn(
            ("auth", ex.route_name),
            "route %s: authentication check %s %s failed: %s (request %s)",
            ex.route_name,
            auth.upstream,
            path,
            why,
            ex.request_id,
            fields=ex.log_ids(),
        )
        return self._failure_response(failure, ex, accept, warn=False)

    def _failure_response(
        self, failure: UpstreamFailure, ex: Exchange, accept: str | None, *, warn: bool = True
    ) -> web.Response:
        ex.error = failure.reason
        if warn:
            self._warnings.warn(
                ("failure", ex.route_name, failure.status),
                "route %s: %s (request %s)",
                ex.route_name,
                failure.reason,
                ex.request_id,
                fields=ex.log_ids(),
            )
        extra = None
        if failure.retry_after is not None:
            extra = {"Retry-After": str(max(1, round(failure.retry_after)))}
        answer = error_response(
            failure.status,
            failure.reason,
            route=ex.route_name,
            request_id=ex.request_id,
            accept=accept,
            headers=extra,
        )
        ex.bytes_out = len(answer.body) if isinstance(answer.body, bytes) else 0
        return answer


def _with_route_headers(route: Route | None, resp: UpstreamResponse) -> UpstreamResponse:
    """`resp` with the route's `response_headers` applied (it is relayed from these)."""
    if route is not None and route.response_headers:
        resp.raw_headers = rewrite_response_headers(resp.raw_headers, route.response_headers)
    return resp


def _set_route_headers(route: Route | None, out: web.Response) -> web.Response:
    """`_with_route_headers` for an answer the proxy composes (an ACL translation)."""
    if route is not None:
        for name, value in route.response_headers:
            out.headers.popall(name, None)
            if value is not None:
                out.headers[name] = value
    return out


def _awaits_admission(rt: Runtime, route: Route | None, side: str) -> bool:
    """Whether the request waits on something before it is sent: the auth check, or a
    rate-limit budget kept in Redis."""
    if route is None:
        return False
    if auth_filter.applies(rt.config.auth, route, side == EXTRACTED):
        return True
    return route.rate_limit is not None and route.rate_limit.shared


def _limit_key(policy: RateLimit, ex: Exchange, headers: list[tuple[str, str]]) -> str:
    header = None
    if policy.key.startswith("header:"):
        header = header_value(headers, policy.key[len("header:") :])
    return limit_key(policy, client=ex.client, tenant=ex.tenant, header=header)


class RateLimited(Exception):
    """A request over its route's rate limit (raised by the filters stage)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__("rate limited")
        self.verdict = verdict


class _Express:
    """One express request whose first attempt is out: the upstream connection's read
    callback ends it (`ProxyHandler.serve_express`)."""

    __slots__ = (
        "handler",
        "conn",
        "ex",
        "begun",
        "plan",
        "first",
        "cancelled",
        "pre",
        "body",
        "msg",
    )

    def __init__(
        self,
        handler: ProxyHandler,
        conn: ExpressConnection,
        msg: Any,
        pre: Preflight,
        body: bytes,
        ex: Exchange,
        begun: tuple[Exchange, float],
        plan: PlainPlan,
        first: Started | None,
    ) -> None:
        self.handler = handler
        self.conn = conn
        self.ex = ex
        self.begun = begun
        self.plan = plan
        self.first = first
        self.cancelled = False
        self.pre = pre
        self.body = body
        self.msg = msg

    def finish(self, first: Started | None) -> Coroutine[Any, Any, None]:
        """The rest of the request as a task would run it (`first`: the attempt under way)."""
        handler, conn, pre, body, plan = self.handler, self.conn, self.pre, self.body, self.plan

        def work(rt: Runtime, ex: Exchange) -> Awaitable[Any]:
            return handler._plain_call(conn, self.msg, pre, body, ex, plan, first)

        return handler.serve_plain(conn, self.msg, pre, body, begun=self.begun, work=work)

    def on_response(self) -> None:
        """As `_plain_call` does when the first attempt succeeds and the body is small."""
        first = self.first
        if self.cancelled or first is None:
            return
        ready = first.pending.complete()
        body = None
        if ready is not None:
            message, payload = ready
            body = whole_body(message.code, message.raw_headers, payload, self.msg.method)
        if body is None:
            self.conn.escalate(self.finish(first))
            return
        handler, ex = self.handler, self.ex
        upstream = self.plan.upstream
        try:
            resp = first.pending.take(handler.pool.pool(upstream))
        except Exception as exc:  # noqa: BLE001 - a callback's error would leave all waiting
            # Nothing reached the client; without this, it waited for ever, and the slot and
            # the in-flight count were never given back.
            first.pending.abandon()
            first.slot.done(error=exc)
            first.slot.close()
            if self.plan.shadowing:
                handler._shadow_lost(ex, PRIMARY_FAILED)
            self.conn.send_response(handler._internal_error(ex, exc, self.msg.headers))
            handler._end(ex, self.begun[1], self.msg.headers)
            self.conn.express_done()
            return
        try:
            if handler.telemetry is not None:
                handler.telemetry.attempt_finished(first.span, upstream.name, resp.status)
            first.slot.done(status=resp.status)
            first.slot.close()
            self.conn.send_whole(_with_route_headers(ex.route, resp), body, ex.request_id)
            ex.bytes_out = len(body)
            ex.status = resp.status
        except Exception as exc:  # noqa: BLE001 - as `_run` answers it
            self.conn.send_response(handler._internal_error(ex, exc, self.msg.headers))
        finally:
            resp.release()
        if self.plan.shadowing:
            if ex.status == resp.status:
                capture = handler._capture()
                capture.add(body)
                handler._submit_shadow(self.pre, self.plan, self.body, resp, capture, first.at, ex)
            else:  # the answer failed on the way out (an internal error was sent instead)
                handler._shadow_lost(ex, PRIMARY_FAILED)
        handler._end(ex, self.begun[1], self.msg.headers)
        self.conn.express_done()

    def cancel(self) -> None:
        """The client went away before the answer: as a cancelled `_run`."""
        self.cancelled = True
        first, ex = self.first, self.ex
        assert first is not None
        first.pending.abandon()
        first.slot.close(cancelled=True)
        if self.plan.shadowing:  # sampled in, and no primary answer will come
            self.handler._shadow_lost(ex, CLIENT_GONE)
        ex.status = ex.status or 499
        self.handler._end(ex, self.begun[1], self.msg.headers)


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _routing_headers(rt: Runtime, raw_headers: list[tuple[str, str]], transport: Any) -> Any:
    """What route `headers` conditions see (`routing_view`); nothing when none has one."""
    names = rt.table.header_names
    if not names:
        return _NO_HEADERS
    return routing_view(raw_headers, names, trusted=is_trusted(_peer(transport), rt.trusted))


def _edge(
    method: str,
    target: str,
    version: Any,
    raw: Any,
    client_headers: Any,
    max_total: int | None = None,
) -> tuple[list[tuple[str, str]], EdgeRequest]:
    """The edge stage for both lanes: the client's headers as text, and `admit`'s verdict
    (raises `Refused`). `max_total` bounds the header fields together; the fast lane hands
    a head that long to the aiohttp lane, which passes it."""
    if max_total is not None and sum(len(k) + len(v) for k, v in raw) > max_total:
        raise Refused(
            431,
            f"request header fields total more than {max_total} bytes (limits.max_header_total)",
        )
    raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    edge = admit(
        method,
        target,
        (version.major, version.minor),
        raw_headers,
        client_headers.getall("Host", ()),
        ALLOWED_METHODS,
    )
    return raw_headers, edge


def _cookies(client_headers: Any) -> Mapping[str, str]:
    """Request cookies exactly as aiohttp's `BaseRequest.cookies` reads them, so canary
    stickiness by cookie gives the same side in both lanes."""
    from aiohttp._cookie_helpers import parse_cookie_header

    parsed = parse_cookie_header(client_headers.get("Cookie", ""))
    return MappingProxyType({name: morsel.value for name, morsel in parsed})


def _peer(transport: Any) -> str:
    return "" if transport is None else peer_address(transport.get_extra_info("peername"))


def _client_ip(client_headers: Any, peer: str, rt: Runtime, trusted: bool) -> str:
    """The client address: the peer, or the nearest address the trusted proxies vouched
    for (`client_address`)."""
    if not trusted:
        return peer
    return client_address(client_headers.getall("X-Forwarded-For", ()), peer, rt.trusted)
