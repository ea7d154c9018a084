"""The admin port: health, readiness, the effective config, reload, and live state.

It listens on its own port so operators' endpoints can never collide with a proxied
application's paths, and so it can be firewalled separately.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from proxy import __version__
from proxy.config.lint import config_warnings
from proxy.reload import Reloader
from proxy.telemetry.redact import REDACTED, Redactor, secret_param


@dataclass
class AdminContext:
    reloader: Reloader
    in_flight: Callable[[], int]
    ready: Callable[[], bool]
    # Optional providers, filled in as capabilities are wired.
    upstreams: Callable[[], Any] | None = None
    shadow: Callable[[], Any] | None = None
    metrics: Callable[[], tuple[bytes, str] | None] | None = None
    lanes: Callable[[], dict[str, int]] | None = None  # requests per listener lane
    extra_routes: list[web.RouteDef] = field(default_factory=list)
    # In a multi-worker setup a reload must reach every worker: signal the supervisor.
    supervisor_pid: int | None = None
    # Bound to a loopback address: then only loopback Host names are served (DNS rebinding).
    loopback: bool = False


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (frozenset, set)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def config_view(ctx: AdminContext) -> dict[str, Any]:
    rt = ctx.reloader.holder.current
    redactor = Redactor(rt.config.telemetry.redact)
    last_error = ctx.reloader.last_error
    history = [_event_view(event, redactor) for event in ctx.reloader.history]
    return {
        "version": __version__,
        "source": str(ctx.reloader.path),
        "generation": rt.generation,
        "last_reload_error": redactor.text(last_error) if last_error else last_error,
        "reloads": {"ok": ctx.reloader.successes, "failed": ctx.reloader.failures},
        "history": history,
        "config": _redacted(_jsonable(rt.config), redactor),
        "restart_pending": list(rt.restart_pending),
        # What `strangler check` warns about in the table in force (docs/routes.md, Warnings).
        "warnings": [redactor.text(w) for w in (*config_warnings(rt.config), *rt.notes)],
    }


def _event_view(event: Any, redactor: Redactor) -> dict[str, Any]:
    """A reload event as shown: its error may quote a value holding a secret."""
    entry = event.as_dict()
    if entry.get("error"):
        entry["error"] = redactor.text(entry["error"])
    return entry


def _redacted(view: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Mask what may be a secret: credentials in URLs (a Redis password in `state:` or
    `shadow.store`), secret query parameters of the auth check's path, and the values a
    route matches in secret headers (`X-Api-Key: ...`)."""
    from proxy.config.values import redact_url

    if isinstance(view.get("state"), str):
        view["state"] = redact_url(view["state"])
    shadow = view.get("shadow")
    if isinstance(shadow, dict) and isinstance(shadow.get("store"), str):
        shadow["store"] = redact_url(shadow["store"])
    auth = view.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("path"), str):
        path, sep, query = auth["path"].partition("?")
        auth["path"] = path + sep + redactor.query(query)
    for route in view.get("routes") or ():
        for cond in (route.get("match") or {}).get("headers") or ():
            name = str(cond.get("name", ""))
            if redactor.is_secret(name) or secret_param(name):
                for field in ("value", "regex"):
                    if cond.get(field) is not None:
                        cond[field] = REDACTED
    return view


def _refused(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


@web.middleware
async def _same_origin_writes(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse a state-changing request a browser sent from another origin: a page open in an
    operator's browser could otherwise `POST /-/reload` here (a simple cross-site POST needs
    no CORS preflight). Browsers send `Origin` on such requests; curl and scripts do not."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
            return _refused(
                403,
                "cross_origin_refused",
                f"{request.method} {request.path} from origin {origin!r} refused: the admin "
                "API takes state-changing requests from its own origin only",
            )
    return await handler(request)


# On every admin answer. The dashboard is a page of its own scripts and styles that reads
# same-origin JSON: nothing else may run in it (`default-src 'none'`), no other site may
# frame it (clickjacking) or pull the admin JSON into its own process as a script or an
# image (`Cross-Origin-Resource-Policy`), and no answer is sniffed into HTML.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405 from the router: answers too
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@web.middleware
async def _loopback_hosts_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """On a loopback address, a `Host` that is a name other than localhost means a browser
    was led here by DNS rebinding (a page whose domain now resolves to 127.0.0.1 reading
    `/-/config`): refused. Curl, scripts and a port-forward send `localhost` or the address."""
    host = request.host
    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    if name.lower() not in _LOOPBACK_NAMES:
        return _refused(
            421,
            "host_refused",
            f"Host {host!r} refused: the admin API listens on a loopback address and answers "
            "to localhost, 127.0.0.1 or [::1] only",
        )
    return await handler(request)


def build_admin_app(ctx: AdminContext) -> web.Application:
    checks = [_loopback_hosts_only] if ctx.loopback else []
    app = web.Application(middlewares=[_security_headers, *checks, _same_origin_writes])

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def ready(_: web.Request) -> web.Response:
        ok = ctx.ready()
        body: dict[str, Any] = {"ready": ok, "in_flight": ctx.in_flight()}
        if ctx.lanes is not None:
            body["lanes"] = ctx.lanes()
        return web.json_response(body, status=200 if ok else 503)

    async def config(_: web.Request) -> web.Response:
        return web.json_response(config_view(ctx), dumps=lambda o: json.dumps(o, default=str))

    async def reload(_: web.Request) -> web.Response:
        event = await ctx.reloader.reload_async("admin")
        if ctx.supervisor_pid:
            # The other workers reload too (SIGUSR1: all but this one, which just did).
            os.kill(ctx.supervisor_pid, signal.SIGUSR1)
        redactor = Redactor(ctx.reloader.holder.current.config.telemetry.redact)
        return web.json_response(_event_view(event, redactor), status=200 if event.ok else 422)

    async def upstreams(_: web.Request) -> web.Response:
        data = ctx.upstreams() if ctx.upstreams else {}
        return web.json_response(data)

    async def shadow(_: web.Request) -> web.Response:
        data = ctx.shadow() if ctx.shadow else {"routes": []}
        return web.json_response(data)

    async def metrics(_: web.Request) -> web.Response:
        # 404 while off: Prometheus then shows the target failing instead of an empty
        # scrape it would take for a healthy one.
        found = ctx.metrics() if ctx.metrics is not None else None
        if found is None:
            return web.Response(
                status=404, text="metrics are disabled (telemetry.metrics: false in routes.yaml)\n"
            )
        body, content_type = found
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/-/health", health)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/config", config)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/-/upstreams", upstreams)
    app.router.add_get("/-/shadow", shadow)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(ctx.extra_routes)
    return app
