"""Process lifecycle: workers, signals, hot reload, graceful shutdown.

One worker is one asyncio process (uvloop) whose port is served by `proxy.listener` (the
fast lane) in front of aiohttp's low-level server (the lane for everything else), which
keeps its strict C (llhttp) parser and skips the web framework's router and middleware:
the proxy has its own router. `--workers N` runs N such processes on one port with
SO_REUSEPORT under a small supervisor that forwards SIGHUP (reload) and SIGTERM (drain).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp.web_response
from aiohttp import web

from proxy.admin.api import AdminContext, build_admin_app
from proxy.aiohttp_lane import EdgeAppRunner, EdgeServer
from proxy.config.model import Config, Endpoint, Limits, ShadowStoreConfig, same_port
from proxy.forward import UpstreamPool
from proxy.handler import ProxyHandler
from proxy.http1 import SERVER_NAME
from proxy.linger import Lingering
from proxy.listener import Listener, flushed
from proxy.reload import Reloader, ReloadEvent
from proxy.runtime import Runtime, RuntimeHolder
from proxy.startup_signals import STARTUP_SIGNALS
from proxy.telemetry import (
    Telemetry,
    mark_worker_dead,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from proxy.telemetry.http import dashboard_routes, metrics_endpoint
from proxy.telemetry.logging import configure_logging, log_level_from_env
from proxy.telemetry.logstream import BackgroundLogStream
from proxy.telemetry.metrics import multiprocess_dir
from proxy.telemetry.redact import Redactor
from proxy.upstream.registry import GuardRegistry
from proxy.websocket import going_away

log = logging.getLogger("strangler")

# aiohttp names itself and the Python version (`Server: Python/3.11 aiohttp/3.14.5`) on
# every answer it prepares without a `Server` field: the proxy's own errors, its parser's
# 400s, relayed answers whose upstream sent none, the admin API. A version disclosure that
# scanners flag; the fast lane says `strangler` (`proxy.http1.SERVER_NAME`), so does this.
aiohttp.web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]


def load_translators(config_path: Path) -> tuple[Mapping[str, Any], list[Any]]:
    """The ACL translators a routes.yaml may name (beside it in acl/translators, else built
    in), and the problems of the files that failed to load."""
    try:
        from acl.registry import load_translators_reporting as _load
    except ImportError:
        return {}, []
    local = config_path.parent / "acl" / "translators"
    if local.is_dir():
        return _load(local)
    builtin = Path(__file__).resolve().parent.parent / "acl" / "translators"
    return _load(builtin) if builtin.is_dir() else ({}, [])


def load_runtime(path: Path, generation: int = 0, *, secrets: bool = True) -> Runtime:
    """routes.yaml (and its translators) → a ready `Runtime`, or an exception saying why.

    A translator file that fails to load refuses the table only when a route names a
    translator that is missing for it; otherwise the problems are the runtime's `notes`
    (a half-written file nobody uses yet must not block every other change)."""
    from proxy.config.loader import load_config

    translators, problems = load_translators(path)
    notes: tuple[str, ...] = ()
    if problems:
        from acl.translator import TranslatorLoadError

        missing = {r.acl for r in load_config(path).routes if r.acl} - set(translators)
        # The broken files that may hold a missing translator: a YAML file is named after
        # its translator; a Python one registers any name, so it may hold any.
        relevant = [p for p in problems if Path(p.file).stem in missing or p.file.endswith(".py")]
        if missing and relevant:
            raise TranslatorLoadError(relevant)
        # Any other missing name is simply absent: `load_config` says so, per route.
        notes = tuple(f"ACL translator not loaded (no route names it): {p}" for p in problems)
    config = load_config(path, translators=set(translators))
    return Runtime.build(
        config, translators=translators, generation=generation, notes=notes, secrets=secrets
    )


@dataclass(frozen=True, slots=True)
class ServeOptions:
    config_path: Path
    host: str | None = None
    port: int | None = None
    admin_host: str | None = None
    admin_port: int | None = None
    workers: int = 1
    worker_index: int = 0
    supervisor_pid: int | None = None
    # A supervised worker's restart-only settings (`RESTART_ONLY`, JSON), as the supervisor
    # read them: a worker restarted after a crash must not listen where a later edit says.
    pinned: str | None = None
    watch_interval: float = 0.25
    fast_lane: bool = True  # plain requests served by proxy.listener; off: all by aiohttp
    express: bool = True  # the fast lane answers from upstream callbacks, without a task


EXIT_CANNOT_LISTEN = 3  # a worker's exit code the supervisor does not restart on


class CannotStart(Exception):
    """Something the worker needs cannot be had: said in one line, exit 1, no traceback,
    and a supervisor does not restart the worker (a restart would meet the same)."""


class CannotListen(CannotStart):
    """A listen address cannot be bound."""

    def __init__(self, what: str, host: str, port: int, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        hint = (
            "another process has it: stop that process, or choose another port"
            if getattr(exc, "errno", None) == errno.EADDRINUSE
            else "check the host is an address of this machine and the port is 0-65535"
        )
        super().__init__(f"cannot listen for {what} on {host}:{port}: {reason} ({hint})")


def _probe_free(host: str, port: int) -> None:
    """Bind (without listening) as no other process may: the workers' SO_REUSEPORT would
    otherwise share the port with another strangler started by mistake, and the two
    configs would split the traffic without a word."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except (OSError, OverflowError) as exc:
            raise CannotListen("requests (listen)", host, port, exc) from exc


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except (OSError, OverflowError) as exc:
        sock.close()
        raise CannotListen("requests (listen)", host, port, exc) from exc
    sock.setblocking(False)
    return sock


def _shadow_translators(holder: RuntimeHolder) -> tuple[Any, Any]:
    """The mirror's ACL hooks: translate with whatever translator the current runtime has."""
    from acl.translator import RequestRejected
    from acl.wire import error_response, request_message, translate_request, translate_response
    from proxy.shadow.mirror import CandidateAnswered
    from proxy.shadow.model import CapturedResponse, ShadowRequest, headers_of

    def to_new(route: Any, req: ShadowRequest) -> ShadowRequest:
        rt = holder.current
        translator = rt.translator_for(route)
        if translator is None:
            return req
        match = rt.table.match(req.method, req.path, "", dict(req.headers))
        params = match.params if match else {}
        try:
            wire = translate_request(
                translator, req.method, req.path, req.query, req.headers, req.body, params
            )
        except RequestRejected as rejected:  # the monolith's own answer to this input
            answer = error_response(rejected, translator)
            raise CandidateAnswered(
                CapturedResponse(answer.status, headers_of(answer.headers), answer.body)
            ) from rejected
        path = wire.path if wire.path != req.path else (req.candidate_path or req.path)
        return ShadowRequest(
            req.method,
            req.path,
            wire.query,
            headers_of(wire.headers),
            wire.body,
            candidate_path=path,
        )

    def to_legacy(route: Any, req: ShadowRequest, resp: CapturedResponse) -> CapturedResponse:
        translator = holder.current.translator_for(route)
        if translator is None:
            return resp
        legacy_request = request_message(req.method, req.path, req.query, req.headers, req.body)
        out = translate_response(translator, resp.status, resp.headers, resp.body, legacy_request)
        return CapturedResponse(out.status, headers_of(out.headers), out.body, resp.latency)

    return to_new, to_legacy


async def run_worker(opts: ServeOptions, runtime: Runtime) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and return 0."""
    from proxy.shadow.mirror import ShadowMirror
    from proxy.shadow.send import HttpSender
    from proxy.shadow.store import store_from_config

    loop = asyncio.get_running_loop()
    started = runtime.config  # the file's restart-only sections, as this process read them
    runtime = replace(runtime, config=_with_flags(started, opts))
    holder = RuntimeHolder(runtime)
    config: Config = runtime.config
    pool = UpstreamPool()
    telemetry = Telemetry(config.telemetry, log_stream=_log_stream())
    telemetry.reconfigure(config)
    guards = GuardRegistry(config, on_transition=telemetry.breaker_changed)
    await guards.start()
    sender = HttpSender(lambda: holder.current.config.upstreams)
    translate_request, translate_response = _shadow_translators(holder)
    # With a shadow route the store is opened now, so a store that cannot be used stops the
    # start with its reason. Without one (yet) it is created at the first comparison a
    # reload's shadow route makes: a proxy that shadows nothing needs no writable folder
    # beside routes.yaml (a ConfigMap is read-only) and leaves no file there.
    shadowing = any(route.mode == "shadow" for route in config.routes)
    mirror = ShadowMirror(
        _open_shadow_store(config, lambda c: store_from_config(c, lazy=not shadowing)),
        send=telemetry.traced_shadow_sender(sender),
        translate_request=translate_request,
        translate_response=translate_response,
        primary_upstream=config.default,
        redact=config.telemetry.redact,
        count=telemetry.count,
        max_memory=config.shadow.max_memory,
    )
    handler = ProxyHandler(
        holder, pool, guards=guards, telemetry=telemetry, mirror=mirror, limits=config.limits
    )
    telemetry.track_in_flight(lambda: handler.in_flight)

    def on_swap(old: Runtime, new: Runtime) -> None:
        # As at start: a reload that brings a setting with no effect says so.
        for note in (*_warnings(new.config), *new.notes):
            log.warning("%s", note)
        keep = set(new.config.upstreams.values())
        loop.create_task(pool.retire(keep, grace=new.config.grace_period))
        guards.update(new.config)
        telemetry.reconfigure(new.config)
        mirror.primary_upstream = new.config.default
        mirror.set_redact(new.config.telemetry.redact)
        old_ups = old.config.upstreams
        mirror.forget_candidates(n for n, u in new.config.upstreams.items() if old_ups.get(n) != u)

    def on_event(event: ReloadEvent) -> None:
        telemetry.reload_finished(
            event.ok,
            version=holder.current.config.version if event.ok else None,
            generation=event.generation,
            error=event.error,
            trigger=event.trigger,
            at=event.at,
        )

    def build(path: Path, generation: int) -> Runtime:
        return _keep_restart_only(load_runtime(path, generation), started, config)

    reloader = Reloader(opts.config_path, holder, build, on_swap=on_swap, on_event=on_event)
    limits = config.limits
    lingering = Lingering()  # connections closed while the client may still send (both lanes)
    low_level = EdgeServer(
        handler,
        handler_cancellation=True,
        max_line_size=limits.max_request_line,
        max_field_size=limits.max_header_size,
        max_headers=limits.max_headers,
        auto_decompress=False,
        access_log=None,
        keepalive_timeout=limits.idle_timeout,
        lingering=lingering,
    )
    host = opts.host or config.listen.host
    port = opts.port if opts.port is not None else config.listen.port
    listener = Listener(
        handler,
        low_level,
        limits,
        fast_lane=opts.fast_lane,
        express=opts.express,
        lingering=lingering,
    )
    sock = _listen_socket(host, port, reuse_port=opts.workers > 1)
    port = sock.getsockname()[1]  # the one the system chose, for port 0
    if port != config.listen.port:  # `/-/config` shows the port in use (and so do reloads)
        config = replace(config, listen=Endpoint(config.listen.host, port))
        holder.current = replace(holder.current, config=config)
    server = await loop.create_server(listener, sock=sock, backlog=1024)

    stopping = asyncio.Event()
    admin_runner: web.AppRunner | None = None
    if opts.worker_index == 0:
        admin_host = opts.admin_host or config.admin.host
        admin_port = opts.admin_port if opts.admin_port is not None else config.admin.port
        ctx = AdminContext(
            reloader=reloader,
            in_flight=lambda: handler.in_flight,
            ready=lambda: not stopping.is_set(),
            lanes=listener.lanes,
            upstreams=guards.snapshot,
            shadow=mirror.snapshot,
            metrics=lambda: metrics_endpoint(telemetry),
            extra_routes=dashboard_routes(
                lambda: holder.current.config, telemetry, breakers=guards.states
            ),
            supervisor_pid=opts.supervisor_pid,
            loopback=admin_host in ("127.0.0.1", "::1", "localhost"),
        )
        admin_runner = EdgeAppRunner(build_admin_app(ctx), lingering=lingering, access_log=None)
        await admin_runner.setup()
        try:
            await web.TCPSite(admin_runner, admin_host, admin_port, reuse_port=False).start()
        except (OSError, OverflowError) as exc:
            raise CannotListen("the admin API (admin)", admin_host, admin_port, exc) from exc
        log.info("admin on http://%s:%d", admin_host, admin_port)

    supervised = opts.supervisor_pid is not None
    cut_now = asyncio.Event()

    def second_interrupt() -> None:
        # A person pressing Ctrl-C again does not want to wait for the grace period.
        # (SIGTERM again stays graceful: scripts and orchestrators may repeat it.)
        if stopping.is_set():
            log.warning("interrupted again: cutting %d requests in flight now", handler.in_flight)
        stopping.set()
        cut_now.set()

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    if supervised:
        # A terminal's Ctrl-C reaches the whole process group, workers included: the
        # supervisor alone answers it, with SIGTERM (drain) and, pressed again, CUT_NOW.
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        loop.add_signal_handler(CUT_NOW, second_interrupt)
    else:
        loop.add_signal_handler(signal.SIGINT, stopping.set)
    reloading: set[asyncio.Task[Any]] = set()  # kept referenced until done

    def reload_on_signal() -> None:
        task = loop.create_task(reloader.reload_async("signal"))
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
    if STARTUP_SIGNALS.hup:  # asked while this process was starting: reload now
        STARTUP_SIGNALS.hup = False
        reload_on_signal()
    watcher = loop.create_task(reloader.watch(opts.watch_interval))
    # Whichever worker is scraped reads the others' in-flight counts from their files.
    publisher = loop.create_task(_publish_in_flight(telemetry)) if multiprocess_dir() else None
    for warning in (*_warnings(config), *runtime.notes):
        log.warning("%s", warning)
    files, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if files != resource.RLIM_INFINITY and files < FEW_OPEN_FILES:
        log.warning(
            "open files limit is %d: about %d clients at once (each needs its upstream "
            "connection too), and past it new connections are closed unanswered; raise the "
            "hard limit (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=)",
            files,
            max(0, files // 2 - 50),
        )
    log.info(
        "strangler worker %d listening on http://%s:%d (%d routes, default upstream %s)",
        opts.worker_index,
        host,
        port,
        len(config.routes),
        config.default,
    )
    await stopping.wait()

    grace = holder.current.config.grace_period
    log.info("draining: %d requests in flight, grace %.1fs", handler.in_flight, grace)
    server.close()  # stop accepting; established connections stay
    watcher.cancel()
    if publisher is not None:
        publisher.cancel()

    def grace_over() -> None:
        if handler.in_flight:
            log.warning(
                "grace period (%.1fs) over: cutting %d requests still in flight (their "
                "access lines say 499); raise grace_period if they should finish",
                grace,
                handler.in_flight,
            )

    if not supervised:
        loop.add_signal_handler(signal.SIGINT, second_interrupt)
    overdue = loop.call_later(grace, grace_over)
    # WebSockets live on past any grace period: just before the cut they get a proper
    # close (1001, going away) on both sides, not a bare TCP close.
    farewell = loop.call_later(
        max(0.0, grace - 0.75), lambda: loop.create_task(going_away(handler.websockets))
    )
    await drain(listener, low_level, grace, cut_now)
    overdue.cancel()
    farewell.cancel()
    if admin_runner is not None:
        await admin_runner.cleanup()
    await mirror.close(close_store=True)
    await sender.close()
    await guards.close()
    await pool.close()
    telemetry.shutdown()
    log.info("stopped")
    return 0


async def _publish_in_flight(telemetry: Telemetry, every: float = 1.0) -> None:
    while True:
        await asyncio.sleep(every)
        telemetry.publish_in_flight()


def _open_shadow_store(config: Config, open_store: Callable[[Config], Any]) -> Any:
    """The diff store, or `CannotStart` naming it and the fix (a read-only config folder
    is the usual cause: the default store is a file beside routes.yaml)."""
    from proxy.shadow.store import StoreUnusable

    try:
        return open_store(config)
    except StoreUnusable as exc:  # says what is wrong with which file, and the fix
        raise CannotStart(f"{exc} (in {config.source})") from None
    except Exception as exc:  # noqa: BLE001 - sqlite3, OSError, redis URL errors alike
        from proxy.config.values import redact_url
        from proxy.shadow.store import default_store_url

        url = redact_url(config.shadow.store or default_store_url(config.source))
        raise CannotStart(
            f"cannot open the shadow diff store {url}: {exc} (set `shadow.store` in "
            f"{config.source} to a writable file, e.g. sqlite:////var/lib/strangler/shadow.db, "
            "or to redis://host:6379/1)"
        ) from None


# After the grace period, how long handlers that were cut may take to unwind (a WebSocket's
# close handshakes, a cancelled upstream call) before their connections are closed anyway.
_UNWIND = 1.0


async def drain(
    listener: Any, low_level: web.Server, grace: float, cut_now: asyncio.Event | None = None
) -> None:
    """Let requests in flight finish, with `grace` as one deadline for all of them, or
    until `cut_now` is set.

    Idle keep-alive connections of the aiohttp lane are closed at once (`pre_shutdown`):
    aiohttp's own `shutdown` would otherwise wait the whole grace period for a next
    request that never comes. And aiohttp waits `grace` for a handler, then `grace` again
    for it to unwind once cancelled; past `grace` + `_UNWIND` what is left is closed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    # Lingering closes (proxy/linger.py) end with the grace period at the latest, those
    # that begin as the requests in flight are answered included.
    lingering: Lingering = listener.lingering
    lingering.stop_by(deadline)
    # aiohttp closes each connection once its handler is done, with the answer's last
    # bytes maybe still queued: they are written before the process leaves.
    transports = [c.transport for c in low_level.connections]
    low_level.pre_shutdown()
    stopping = asyncio.ensure_future(
        asyncio.gather(listener.shutdown(grace), low_level.shutdown(grace))
    )
    waits: set[asyncio.Future[Any]] = {stopping}
    if cut_now is not None:
        waits.add(asyncio.ensure_future(cut_now.wait()))
    done, _ = await asyncio.wait(
        waits, timeout=grace + _UNWIND, return_when=asyncio.FIRST_COMPLETED
    )
    for waiting in waits:
        waiting.cancel()
    if stopping in done:
        await flushed(transports, deadline)
        if cut_now is None:
            await lingering.closed()
        else:
            cutting = asyncio.ensure_future(cut_now.wait())
            closed = asyncio.ensure_future(lingering.closed())
            await asyncio.wait({cutting, closed}, return_when=asyncio.FIRST_COMPLETED)
            cutting.cancel()
            closed.cancel()
        lingering.abort()
        return
    await asyncio.gather(stopping, return_exceptions=True)
    for conn in low_level.connections:
        conn.force_close()
    for edge_conn in list(listener.connections):
        edge_conn.abort()
    lingering.abort()


def _warnings(config: Config) -> list[str]:
    try:
        from proxy.config.loader import config_warnings
    except ImportError:
        return []
    return list(config_warnings(config))


_LOG_STREAM: BackgroundLogStream | None = None


def _log_stream() -> BackgroundLogStream:
    """stdout, written from a thread (proxy/telemetry/logstream.py), whatever
    PYTHONUNBUFFERED says: access lines are handed over in batches (RequestLog), other
    log lines as they are written. One per process, as stdout is."""
    global _LOG_STREAM
    if _LOG_STREAM is None:
        _LOG_STREAM = BackgroundLogStream(sys.stdout.fileno())
    return _LOG_STREAM


# Below this many descriptors the proxy says so at startup (a common soft limit is 1024).
FEW_OPEN_FILES = 4096
# Seconds a stopping process waits for its last log lines to reach a blocked stdout.
LOG_DRAIN_TIMEOUT = 2.0


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one, as Go's runtime does; return it.

    Each client connection takes a descriptor and its upstream connection another, so the
    usual soft limit of 1024 caps the proxy near 500 clients at once, and past it the event
    loop (libuv) accepts each new connection and closes it at once: no answer, no log
    line. The hard limit is the operator's to set (ulimit -Hn, LimitNOFILE=)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def serve(opts: ServeOptions) -> int:
    """Entry point of `strangler serve`."""
    try:
        log_level_from_env()
    except ValueError as exc:
        print(f"strangler: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        runtime = load_runtime(opts.config_path)
    except Exception as exc:  # noqa: BLE001 - a bad file at startup is a clean exit 1
        print(f"strangler: cannot start: {exc}", file=sys.stderr)
        return 1
    raise_open_files_limit()
    if opts.pinned:
        runtime = _with_pinned(runtime, opts.pinned)
    clash = _port_clash(runtime.config, opts)
    if clash:
        print(f"strangler: cannot start: {clash}", file=sys.stderr)
        return 1
    if opts.workers > 1 and opts.supervisor_pid is None:
        port = opts.port if opts.port is not None else runtime.config.listen.port
        if port == 0:
            print(
                "strangler: cannot start: port 0 lets the system pick a port for each process, "
                "so --workers would listen on different ports; give a fixed port "
                "(--port or listen.port)",
                file=sys.stderr,
            )
            return 1
        host = opts.host or runtime.config.listen.host
        try:
            _probe_free(host, port)
        except CannotListen as exc:
            print(f"strangler: {exc}", file=sys.stderr)
            return 1
        try:
            return _supervise(opts, runtime.config)
        finally:
            _log_stream().drain(LOG_DRAIN_TIMEOUT)
    if opts.supervisor_pid is not None:
        _stop_with_supervisor(opts.supervisor_pid)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        try:
            return runner.run(run_worker(opts, runtime))
        except CannotStart as exc:
            print(f"strangler: {exc}", file=sys.stderr)
            return EXIT_CANNOT_LISTEN if opts.supervisor_pid is not None else 1
        finally:
            if _LOG_STREAM is not None:  # the last lines ("stopped"), unless stdout is stuck
                _LOG_STREAM.drain(LOG_DRAIN_TIMEOUT)


# The sections a running proxy applies only when it starts (see `run_worker`'s `on_swap`).
RESTART_ONLY = ("listen", "admin", "limits", "shadow")


PINNED_ENV = "STRANGLER_PINNED_SETTINGS"  # the supervisor's `RESTART_ONLY`, as JSON
_PINNED_TYPES = {
    "listen": Endpoint,
    "admin": Endpoint,
    "limits": Limits,
    "shadow": ShadowStoreConfig,
}
# A supervised worker's "cut what is in flight now" (a second Ctrl-C at the supervisor).
CUT_NOW = signal.SIGUSR2


def _pin(config: Config) -> str:
    """The restart-only sections as the supervisor read them, for its workers' environment
    (not argv, which any local user can read: `shadow.store` may hold a Redis password)."""
    return json.dumps({key: asdict(getattr(config, key)) for key in RESTART_ONLY})


def _port_clash(config: Config, opts: ServeOptions) -> str | None:
    """The proxy and its admin API on one port, as the file and the flags add up: said
    before binding, since the admin API's bind error would blame "another process"."""
    bound = _with_flags(config, opts)
    if not same_port(bound.listen, bound.admin):
        return None
    listen = "--port" if opts.port is not None else "listen.port"
    admin = "--admin-port" if opts.admin_port is not None else "admin.port (8081 when not set)"
    port = bound.listen.port
    other = port + 1 if port < 65535 else port - 1
    fix = f"--admin-port {other}"
    if opts.admin_port is None:
        fix = f"`admin: {{port: {other}}}` in {config.source}, or {fix}"
    return (
        f"{listen} and {admin} are both {port}: the proxy and its admin API cannot share a "
        f"port; give the admin API its own ({fix})"
    )


def _with_flags(config: Config, opts: ServeOptions) -> Config:
    """`listen` and `admin` as the command line overrode them: what the process binds."""
    return replace(
        config,
        listen=Endpoint(
            opts.host or config.listen.host,
            opts.port if opts.port is not None else config.listen.port,
        ),
        admin=Endpoint(
            opts.admin_host or config.admin.host,
            opts.admin_port if opts.admin_port is not None else config.admin.port,
        ),
    )


def _keep_restart_only(new: Runtime, started: Config, running: Config) -> Runtime:
    """A reloaded runtime with the restart-only sections the process runs with, so that
    `/-/config` shows what is in force; what the file changed in them (against `started`,
    the file as this process read it) is named in `restart_pending` and logged."""
    pending = tuple(k for k in RESTART_ONLY if getattr(new.config, k) != getattr(started, k))
    notes = tuple(
        f"{new.config.source}: `{key}` changed; it takes effect at the next restart, the rest "
        "of the file is live now"
        for key in pending
    )
    return replace(
        new,
        config=replace(new.config, **{key: getattr(running, key) for key in RESTART_ONLY}),
        notes=new.notes + notes,
        restart_pending=pending,
    )


def _with_pinned(runtime: Runtime, pinned: str) -> Runtime:
    try:
        sections = {key: _PINNED_TYPES[key](**fields) for key, fields in json.loads(pinned).items()}
    except (ValueError, TypeError, KeyError) as exc:  # not from our supervisor: say so, go on
        log.warning("ignoring %s (%s): using routes.yaml's settings", PINNED_ENV, exc)
        return runtime
    # The file may have changed since the supervisor read it (a worker restarted after an
    # edit): what differs is pending, as after a reload.
    pinned_config = replace(runtime.config, **sections)
    return _keep_restart_only(runtime, pinned_config, pinned_config)


def _worker_signals() -> None:
    """A worker starts ignoring what its loop handles once it serves (an ignored signal
    survives exec; Python then installs no KeyboardInterrupt for SIGINT): a reload or a
    Ctrl-C that reaches a worker still starting must not kill it."""
    for sig in (signal.SIGHUP, signal.SIGINT, CUT_NOW):
        signal.signal(sig, signal.SIG_IGN)


# A worker that exits sooner than this after starting counts as failing to start: its next
# restart waits 1, 2, 4 ... up to 30 s (a broken routes.yaml would otherwise mean a restart
# loop as fast as Python starts, each printing the same error).
QUICK_EXIT = 10.0
MAX_RESTART_DELAY = 30.0


def _stop_with_supervisor(supervisor_pid: int) -> None:
    """Linux: have the kernel send this worker SIGTERM (a graceful stop) when its supervisor
    dies, even by SIGKILL; a worker left behind would serve a port nobody manages, and
    `POST /-/reload` would signal a dead (or reused) process id."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's own cleanup must do
        return
    if os.getppid() != supervisor_pid:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(opts: ServeOptions, config: Config) -> int:
    """Run `workers` worker processes on one port; forward reloads and shutdowns.

    Workers ignore SIGINT (a terminal's Ctrl-C reaches them too): the supervisor turns
    the first into SIGTERM for each (a drain) and a second into `CUT_NOW`."""
    # Its lines (a worker restarted) in the workers' format, where log collectors read them,
    # and as theirs never waiting for a blocked stdout (a signal to pass on may be waiting).
    configure_logging(
        config.telemetry.log_format, Redactor(config.telemetry.redact), stream=_log_stream()
    )
    # Workers write their metrics to files in one directory; worker 0 serves the sum.
    own_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = prepare_multiprocess_dir(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    env = dict(os.environ)
    base = [sys.executable, "-m", "proxy.cli", "serve", "-c", str(opts.config_path)]
    if opts.host:
        base += ["--host", opts.host]
    if opts.port is not None:
        base += ["--port", str(opts.port)]
    if opts.admin_host:
        base += ["--admin-host", opts.admin_host]
    if opts.admin_port is not None:
        base += ["--admin-port", str(opts.admin_port)]
    env[PINNED_ENV] = _pin(config)
    me = os.getpid()

    def spawn(i: int) -> subprocess.Popen[bytes]:
        args = base + [
            "--workers",
            str(opts.workers),
            "--worker-index",
            str(i),
            "--supervisor-pid",
            str(me),
        ]
        started[i] = time.monotonic()
        return subprocess.Popen(args, env=env, preexec_fn=_worker_signals)  # noqa: PLW1509

    started = [0.0] * opts.workers
    quick_exits = [0] * opts.workers  # in a row, per worker
    due: list[float | None] = [None] * opts.workers  # when an exited worker is restarted
    workers = [spawn(i) for i in range(opts.workers)]
    stopping = failed = False

    interrupted = False

    def forward(sig: int, _frame: Any) -> None:
        nonlocal stopping, interrupted
        send = sig
        if sig == signal.SIGINT:
            # The first Ctrl-C drains; another cuts what is still in flight.
            send = CUT_NOW if interrupted else signal.SIGTERM
            interrupted = True
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        # SIGUSR1 comes from worker 0's `POST /-/reload`: it reloaded, the others must.
        targets = workers[1:] if sig == signal.SIGUSR1 else workers
        for w in targets:
            if w.poll() is None:
                w.send_signal(signal.SIGHUP if sig == signal.SIGUSR1 else send)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    try:
        while True:
            for i, w in enumerate(workers):
                code = w.poll()
                if code == EXIT_CANNOT_LISTEN and not stopping:
                    # Restarting would fail the same way, forever: stop, as one worker would.
                    log.error("worker %d cannot listen (see above); stopping", i)
                    forward(signal.SIGTERM, None)
                    failed = True
                elif code is not None and not stopping and due[i] is None:
                    now = time.monotonic()
                    quick = now - started[i] < QUICK_EXIT
                    quick_exits[i] = quick_exits[i] + 1 if quick else 0
                    delay = min(MAX_RESTART_DELAY, 2.0 ** (quick_exits[i] - 1)) if quick else 0
                    log.error(
                        "worker %d exited with %s; restarting it%s",
                        i,
                        code,
                        f" in {delay:g} s ({quick_exits[i]} quick exits in a row: see above)"
                        if delay
                        else "",
                    )
                    mark_worker_dead(w.pid)
                    due[i] = now + delay
                when = due[i]
                if when is not None and not stopping and time.monotonic() >= when:
                    due[i] = None
                    workers[i] = spawn(i)
            if stopping and all(w.poll() is not None for w in workers):
                break
            time.sleep(0.1)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        if own_dir:
            remove_multiprocess_dir(metrics_dir)
    return 1 if failed else 0
