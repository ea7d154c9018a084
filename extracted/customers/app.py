"""HTTP shell of the customers service (aiohttp); the rules live in `model`."""

from __future__ import annotations

from aiohttp import web

from extracted.customers import model, store
from extracted.db import Database
from extracted.web import DB_KEY, BadRequest, build_app, dump, is_shadow, json_body, tenant_of

routes = web.RouteTableDef()


class NotFound(Exception):
    pass


class Invalid(Exception):
    def __init__(self, errors: model.FieldErrors):
        super().__init__("validation failed")
        self.errors = errors


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return dump({"error": "bad_request", "detail": str(exc)}, status=400)
    except NotFound as exc:
        return dump({"error": "not_found", "detail": str(exc)}, status=404)
    except Invalid as exc:
        detail = "; ".join(f"{e['field'] or '(body)'}: {e['message']}" for e in exc.errors)
        return dump(
            {"error": "validation_failed", "detail": detail, "fields": exc.errors}, status=422
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return dump(
            {"error": exc.reason.lower().replace(" ", "_"), "detail": exc.text or ""}, exc.status
        )


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise NotFound(f"no customer {raw!r}: ids are positive integers")
    return int(raw)


def _missing(customer_id: int) -> NotFound:
    return NotFound(f"customer {customer_id} does not exist for this tenant")


@routes.get("/v1/customers")
async def list_customers(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    query, errors = model.parse_list_query(request.query)
    if errors:
        raise Invalid(errors)
    rows, total = await request.app[DB_KEY].transaction(
        lambda tx: store.list_page(tx, tenant, query)
    )
    return dump(
        {
            "items": [model.to_json(r) for r in rows],
            "next_cursor": model.next_cursor(query, len(rows), total),
            "total_count": total,
        }
    )


@routes.get("/v1/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    tenant, customer_id = tenant_of(request), _id(request)
    row = await request.app[DB_KEY].transaction(lambda tx: store.get(tx, tenant, customer_id))
    if row is None:
        raise _missing(customer_id)
    return dump(model.to_json(row))


@routes.post("/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    fields, errors = model.validate(await json_body(request), creating=True)
    if errors:
        raise Invalid(errors)
    row = await request.app[DB_KEY].transaction(
        lambda tx: store.insert(tx, tenant, fields), rollback=is_shadow(request)
    )
    return dump(model.to_json(row), status=201)


async def _update(request: web.Request, *, partial: bool) -> web.Response:
    tenant, customer_id = tenant_of(request), _id(request)
    body = await json_body(request)
    if partial and not isinstance(body, dict):
        raise Invalid([{"field": "", "message": "a merge patch must be a JSON object"}])

    def work(tx):
        current = store.get(tx, tenant, customer_id)
        if current is None:
            raise _missing(customer_id)
        document = model.merge_patch(model.to_json(current), body) if partial else body
        fields, errors = model.validate(document, creating=False)
        if errors:
            raise Invalid(errors)
        return store.replace(tx, current, fields)

    row = await request.app[DB_KEY].transaction(work, rollback=is_shadow(request))
    return dump(model.to_json(row))


@routes.put("/v1/customers/{id}")
async def replace_customer(request: web.Request) -> web.Response:
    return await _update(request, partial=False)


@routes.patch("/v1/customers/{id}")
async def patch_customer(request: web.Request) -> web.Response:
    return await _update(request, partial=True)


@routes.delete("/v1/customers/{id}")
async def delete_customer(request: web.Request) -> web.Response:
    tenant, customer_id = tenant_of(request), _id(request)
    deleted = await request.app[DB_KEY].transaction(
        lambda tx: store.delete(tx, tenant, customer_id), rollback=is_shadow(request)
    )
    if not deleted:
        raise _missing(customer_id)
    return web.Response(status=204)


def make_app(db: Database) -> web.Application:
    return build_app("customers", db, routes, errors_middleware)
