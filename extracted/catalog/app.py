"""HTTP shell of the catalog: read-only products in the legacy shape and legacy error shape."""

from __future__ import annotations

from aiohttp import web

from extracted.catalog import products, store
from extracted.db import Database
from extracted.web import DB_KEY, BadRequest, build_app, dump

routes = web.RouteTableDef()
MAX_PAGE_SIZE = 100


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def _error(status: int, code: str, message: str, fields: dict | None = None) -> web.Response:
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return dump({"error": body}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Errors keep the monolith's shape: a client of the legacy API sees no difference."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.message, exc.fields)
    except BadRequest as exc:
        return _error(400, "VALIDATION", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "ERROR")
        return _error(exc.status, code, exc.reason)


def _tenant(request: web.Request) -> str:
    tenant = request.headers.get("X-Tenant-ID", "").strip()
    if tenant not in products.TENANT_CODES:
        what = f"unknown tenant {tenant!r}" if tenant else "missing X-Tenant-ID header"
        raise ApiError(400, "BAD_TENANT", f"{what} in X-Tenant-ID.")
    return tenant


def _page(request: web.Request) -> tuple[int, int]:
    errors, values = {}, {}
    for name, default, hi in (("page", 1, None), ("page_size", 50, MAX_PAGE_SIZE)):
        raw = request.query.get(name, str(default))
        try:
            value = int(raw)
            if value < 1 or (hi is not None and value > hi):
                raise ValueError
            values[name] = value
        except ValueError:
            bound = f"between 1 and {hi}" if hi else "at least 1"
            errors[name] = [f"Must be a whole number {bound} (got {raw!r})."]
    if errors:
        raise ApiError(400, "VALIDATION", "Invalid input.", errors)
    return values["page"], values["page_size"]


@routes.get("/v1/products")
async def list_products(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    page, size = _page(request)
    rows, total = await request.app[DB_KEY].transaction(
        lambda tx: store.list_page(tx, tenant, size, (page - 1) * size)
    )
    return dump(
        {
            "page": page,
            "page_size": size,
            "total": total,
            "results": [products.to_json(r) for r in rows],
        }
    )


@routes.get("/v1/products/{id}")
async def get_product(request: web.Request) -> web.Response:
    tenant, raw = _tenant(request), request.match_info["id"]
    row = None
    if raw.isdigit():
        row = await request.app[DB_KEY].transaction(lambda tx: store.get(tx, tenant, int(raw)))
    if row is None:
        raise ApiError(404, "NOT_FOUND", f"No product with prod_id={raw} for this tenant.")
    return dump(products.to_json(row))


def make_app(db: Database) -> web.Application:
    return build_app("catalog", db, routes, errors_middleware)
