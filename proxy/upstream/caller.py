"""Calling one upstream under its guard: attempts, retries with backoff and budget.

Every failure that happens before a response byte reaches the client becomes an
`UpstreamFailure` carrying the status the client should get (502, 503 or 504), so the
handler can answer, or fall back to legacy, without knowing how the attempt failed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.client import (
    ConnectFailed,
    Interim,
    Pending,
    UpstreamProtocolError,
    UpstreamResponse,
)
from proxy.config.model import IDEMPOTENT_METHODS, Upstream
from proxy.exchange import Exchange
from proxy.forward import BodySource, UpstreamPool, is_small, unrelayable, upstream_target
from proxy.upstream.bulkhead import Rejected
from proxy.upstream.guard import RetryBudgetExhausted, Slot, UpstreamGuard
from proxy.upstream.registry import GuardRegistry


class UpstreamFailure(Exception):
    """An upstream attempt failed before any response byte reached the client."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        retry_after: float | None = None,
        connected: bool = True,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status  # what the client would get: 502, 503 or 504
        self.reason = reason
        self.retry_after = retry_after
        self.connected = connected  # False: the request never left (refused, rejected)
        self.error = error

    @property
    def label(self) -> str:
        """A low-cardinality reason for retry and fallback metrics."""
        if isinstance(self.error, Rejected):
            return self.error.reason  # breaker_open, bulkhead_full, retry_budget
        if self.status == 504:
            return "timeout"
        if self.error is None:
            return "http_5xx"
        return "connect_error" if not self.connected else "error"


@dataclass(slots=True)
class Outgoing:
    """One request as it leaves for upstreams; the same for every attempt and fallback."""

    method: str
    headers: list[tuple[str, str]]  # hop-by-hop stripped, forwarding headers added
    host_header: str  # the client's Host (an upstream's `host_header` overrides it)
    body: bytes | BodySource | None
    interim: Interim | None = None  # relays 1xx responses (103 Early Hints) to the client

    @property
    def body_may_have_left(self) -> bool:
        body = self.body
        if body is None:
            return False
        if isinstance(body, BodySource):
            return body.sent
        return len(body) > 0


@dataclass(slots=True)
class Started:
    """A first attempt the express path admitted and wrote without waiting
    (`UpstreamCaller.start`); `UpstreamCaller.call(started=...)` carries it on."""

    slot: Slot
    pending: Pending
    span: Any
    at: float  # when it was sent (perf_counter), for the shadow report's primary latency


_HOST = frozenset({"host"})
_HOST_AND_TRACE = frozenset({"host", "traceparent", "tracestate"})


class UpstreamCaller:
    def __init__(self, pool: UpstreamPool, guards: GuardRegistry, telemetry: Any | None) -> None:
        self.pool = pool
        self.guards = guards
        self.telemetry = telemetry

    async def call(
        self,
        out: Outgoing,
        upstream: Upstream,
        path: str,
        query: str | None,
        ex: Exchange,
        *,
        fallback: bool = False,
        started: Started | None = None,
    ) -> UpstreamResponse:
        """Attempts against one upstream: breaker, bulkhead, retries within the budget.

        With `started`, the first attempt is one `start` already admitted and sent."""
        guard = self.guards.get(upstream.name)
        telemetry = self.telemetry
        method = out.method
        attempt = 1
        last: UpstreamFailure | None = None
        while True:
            wait = 0.0  # at least this long before a retry: the upstream's Retry-After
            try:
                first, started = started, None
                async with first.slot if first else guard.slot(retry=attempt > 1) as slot:
                    if last is not None and telemetry is not None:  # a retry, admitted
                        telemetry.count("retry", upstream=upstream.name, reason=last.label)
                    try:
                        resp = await self.attempt(
                            out, upstream, path, query, ex, attempt, fallback, started=first
                        )
                    except UpstreamFailure as failure:
                        slot.done(error=failure.error or failure)
                        raise
                    slot.done(status=resp.status)
            except Rejected as rejected:
                if telemetry is not None:
                    if isinstance(rejected, RetryBudgetExhausted):
                        telemetry.count("retry_budget_exhausted", upstream=upstream.name)
                    else:  # the breaker or the bulkhead, on a first attempt or a retry
                        telemetry.count("rejection", upstream=upstream.name, reason=rejected.reason)
                if last is not None:  # a retry was refused: report the real failure
                    raise last from None
                raise UpstreamFailure(
                    503,
                    str(rejected),
                    retry_after=rejected.retry_after,
                    connected=False,
                    error=rejected,
                ) from rejected
            except UpstreamFailure as failure:
                # Once written, a request may have been acted on, body or not (a bodyless
                # POST /orders/7/cancel is as unsafe to repeat as any other).
                sent = failure.connected
                if not guard.may_retry(method, sent, attempt, None, failure.error or failure):
                    self._count_budget_refusal(guard, method, sent, attempt, None, failure)
                    raise
                last = failure
            else:
                if resp.status < 500:
                    return resp
                # A non-idempotent request that got an answer was processed: never resent.
                sent = method not in IDEMPOTENT_METHODS or out.body_may_have_left
                if not guard.may_retry(method, sent, attempt, resp.status, None):
                    self._count_budget_refusal(guard, method, sent, attempt, resp.status, None)
                    return resp
                asked = _retry_after(resp)
                if (isinstance(out.body, BodySource) and out.body.sent) or (
                    asked is not None and asked > guard.retry_policy.backoff_max
                ):
                    # A streamed body cannot go twice; a Retry-After past the backoff cap
                    # asks for patience: the upstream's own answer, headers and body.
                    return resp
                wait = asked or 0.0
                resp.release()
                last = UpstreamFailure(
                    resp.status, f"upstream {upstream.name} answered {resp.status}"
                )
            if isinstance(out.body, BodySource) and out.body.sent:
                raise last  # a streamed body cannot be sent twice
            await asyncio.sleep(max(guard.backoff(attempt), wait))
            attempt += 1

    def _count_budget_refusal(
        self,
        guard: UpstreamGuard,
        method: str,
        sent: bool,
        attempt: int,
        status: int | None,
        error: BaseException | None,
    ) -> None:
        """`may_retry` said no: count it when the policy allowed the retry and only the
        budget did not."""
        if self.telemetry is not None and guard.retry_denied_by_budget(
            method, sent, attempt, status, error
        ):
            self.telemetry.count("retry_budget_exhausted", upstream=guard.name)

    def prepare(
        self,
        out: Outgoing,
        upstream: Upstream,
        path: str,
        query: str | None,
        ex: Exchange,
        attempt: int = 1,
        fallback: bool = False,
    ) -> tuple[str, list[tuple[str, str]], Any]:
        """An attempt's target, headers and span (None unless the request is traced)."""
        host = upstream.host_header or out.host_header or f"{upstream.host}:{upstream.port}"
        target = upstream_target(upstream, path, query)
        span = None
        telemetry = self.telemetry
        if telemetry is not None and ex.span is not None:
            # An unsampled request's attempts carry its own ids (`Unsampled`): no span to make.
            span = ex.span
            if span.sampled:
                span = telemetry.attempt_started(
                    span,
                    out.method,
                    f"{upstream.scheme}://{upstream.host}:{upstream.port}{target}",
                    upstream=upstream.name,
                    attempt=attempt - 1,  # resends before this one: 0 for the first
                    fallback=fallback,
                )
        # One pass: our Host first, and with tracing on, our trace context replaces the
        # client's (`Tracing.inject` semantics, without a second scan).
        drop = _HOST_AND_TRACE if span is not None else _HOST
        send_headers = [("Host", host)] + [h for h in out.headers if h[0].lower() not in drop]
        if span is not None:
            send_headers.append(("traceparent", span.traceparent()))
            if span.trace_state:
                send_headers.append(("tracestate", span.trace_state))
        return target, send_headers, span

    def start(
        self, out: Outgoing, upstream: Upstream, path: str, query: str | None, ex: Exchange
    ) -> Started | None:
        """The first attempt, admitted and written without waiting, when that is possible
        (a closed breaker, a free bulkhead slot, an idle connection, a body in hand);
        None otherwise, and nothing was taken: `call` then does it all."""
        pool = self.pool.pool(upstream)
        if not (out.body is None or isinstance(out.body, bytes)) or not pool.has_idle:
            return None
        slot = self.guards.get(upstream.name).try_slot()
        if slot is None:
            return None
        span = None
        at = time.perf_counter()
        try:
            target, send_headers, span = self.prepare(out, upstream, path, query, ex)
            pending = pool.begin(out.method, target, send_headers, out.body)
        except Exception:  # noqa: BLE001 - `call` meets the same error and reports it
            pending = None
        if pending is None:
            slot.withdraw()
            if span is not None and span is not ex.span and self.telemetry is not None:
                # A traced attempt that never left (its idle connections were stale): `call`
                # makes the real one.
                self.telemetry.tracing.end_client_span(span, None, "not sent")
            return None
        ex.attempts += 1
        return Started(slot, pending, span, at)

    async def attempt(
        self,
        out: Outgoing,
        upstream: Upstream,
        path: str,
        query: str | None,
        ex: Exchange,
        attempt: int = 1,
        fallback: bool = False,
        *,
        started: Started | None = None,
    ) -> UpstreamResponse:
        """One call to one upstream; failures before a response become `UpstreamFailure`."""
        telemetry = self.telemetry
        pool = self.pool.pool(upstream)
        if started is not None:
            span = started.span
            sending = pool.finish(started.pending, out.interim)
        else:
            target, send_headers, span = self.prepare(
                out, upstream, path, query, ex, attempt, fallback
            )
            body = out.body
            data: Any = body.chunks() if isinstance(body, BodySource) else body
            ex.attempts += 1
            sending = pool.request(out.method, target, send_headers, data, out.interim)
        try:
            resp = await sending
            problem = unrelayable(resp.status, resp.raw_headers)
            if problem is not None:
                # A failed attempt like any other invalid answer (counted by the breaker,
                # retried or fallen back from when safe), not a 502 made after it counted
                # as answered.
                resp.discard()
                raise UpstreamProtocolError(problem)
            if not resp.content.is_eof() and is_small(
                out.method, resp.status, resp.header(b"content-length")
            ):
                await _complete(resp)
        except TimeoutError as exc:
            failure = UpstreamFailure(504, f"upstream {upstream.name} timed out", error=exc)
        except ConnectFailed as exc:
            failure = UpstreamFailure(
                502,
                f"upstream {upstream.name} unreachable: {connect_cause(exc)}",
                connected=False,
                error=exc,
            )
        except UpstreamProtocolError as exc:
            failure = UpstreamFailure(
                502, f"upstream {upstream.name} sent an invalid response: {exc}", error=exc
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            failure = UpstreamFailure(
                502, f"upstream {upstream.name} failed: {exc.__class__.__name__}", error=exc
            )
        except asyncio.CancelledError:
            # The client left (or the drain ran out): the attempt still ends, so its span
            # (which the upstream saw as its parent) and its count are not lost.
            if telemetry is not None:
                telemetry.attempt_finished(span, upstream.name, None, error="cancelled")
            raise
        else:
            if telemetry is not None:
                telemetry.attempt_finished(span, upstream.name, resp.status)
            return resp
        if telemetry is not None:
            telemetry.attempt_finished(span, upstream.name, None, error=failure.error)
        raise failure


def connect_cause(exc: BaseException) -> str:
    """Why a connection could not be made, in words an operator can act on: the name
    did not resolve, the certificate was refused, the port refused. No address: clients
    see it (the route and the upstream's name say where)."""
    cause = exc.__cause__ or exc
    if isinstance(cause, socket.gaierror):
        return f"its host name did not resolve ({cause.strerror})"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate was refused ({cause.verify_message}); the proxy trusts "
            "the system's CAs (SSL_CERT_FILE names a bundle with a private CA)"
        )
    if isinstance(cause, ssl.SSLError):
        return f"the TLS handshake failed ({cause.reason or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return "connection refused or failed"


async def _complete(resp: UpstreamResponse) -> None:
    """Wait for the rest of a small body before the attempt counts as answered: an upstream
    that fails mid-body (a reset, a stall past its timeout) then fails the attempt, so the
    breaker counts it and a safe request is retried or falls back, as if it had failed
    before its head; nothing has reached the client yet. The body stays in `content`."""
    try:
        error = resp.content.exception()
        if error is not None:
            raise error
        await resp.content.wait_eof()
    except BaseException:
        resp.release()  # not at its end: the connection is closed, not reused
        raise


def _retry_after(resp: UpstreamResponse) -> float | None:
    """An answer's `Retry-After`, in seconds (an HTTP date counts as far off). A retry comes
    no sooner, and not at all when it asks for longer than the backoff cap: the client gets
    the answer and its Retry-After (as Envoy's rate-limited retry back-off does)."""
    value = resp.header(b"retry-after")
    if value is None:
        return None
    value = value.strip()
    return float(int(value)) if value.isdigit() else float("inf")
