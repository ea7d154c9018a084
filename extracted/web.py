"""aiohttp plumbing shared by the extracted services: JSON bodies, tenant, startup."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence

from aiohttp import web

from extracted.db import Database, Migration
from extracted.telemetry import setup_tracing, tracing_middleware

DB_KEY = web.AppKey("db", Database)
SHADOW_HEADER = "X-Strangler-Shadow"


class BadRequest(Exception):
    """400: the request itself is unusable (JSON syntax, missing tenant)."""


def is_shadow(request: web.Request) -> bool:
    """Dry-run marker set by the proxy on shadow copies of unsafe requests."""
    return request.headers.get(SHADOW_HEADER, "").strip() == "1"


def tenant_of(request: web.Request) -> str:
    tenant = request.headers.get("X-Tenant-ID", "").strip()
    if not tenant:
        raise BadRequest("missing X-Tenant-ID header: every request must name its tenant")
    return tenant


async def json_body(request: web.Request) -> object:
    raw = await request.read()
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def dump(body: object, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":"))
    )


async def health(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    try:
        await db.transaction(lambda tx: tx.one("SELECT 1 AS ok"))
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        return dump({"status": "unhealthy", "db": str(exc)[:200]}, status=503)
    return dump({"status": "ok", "db": "ok", "service": request.app["service"]})


# The monolith's limit (Django's DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MiB): a body it would read
# and judge field by field must not meet a service refusing it unread (a 413 in the service's
# own error shape); the customers translator maps a bigger body's 413 to the monolith's shape.
MAX_BODY = 2_621_440


def build_app(
    service: str,
    db: Database,
    routes: Sequence[web.RouteDef],
    error_middleware: Callable,
) -> web.Application:
    middlewares = [error_middleware]
    tracer = setup_tracing(service)
    if tracer is not None:
        middlewares.insert(0, tracing_middleware(tracer))
        db.tracer = tracer
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[DB_KEY] = db
    app["service"] = service
    app.router.add_get("/health", health)
    app.router.add_routes(routes)

    async def close_db(app: web.Application) -> None:
        await app[DB_KEY].close()

    app.on_cleanup.append(close_db)
    return app


def serve(
    service: str,
    default_port: int,
    default_db: str,
    migrations: Sequence[Migration],
    make_app: Callable[[Database], web.Application],
    argv: Sequence[str] | None = None,
) -> None:
    """`python -m extracted.<service> --port P --db URL`: migrate, then serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog=f"python -m extracted.{service}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--db", default=default_db, help="sqlite:///path, a path, or postgresql://")
    args = parser.parse_args(argv)
    db = Database(args.db)
    db.migrate_sync(migrations)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(make_app(db), host=args.host, port=args.port, print=None, access_log=None)
