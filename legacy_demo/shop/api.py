"""The monolith's JSON API under /api/: token auth, X-Tenant-ID, the one legacy error shape.

Every response body of a success carries `generated_at` and `trace_id`, which differ on every
call: the noise a shadow comparison has to learn to ignore.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from legacy_demo.shop import legacy_format as lf
from legacy_demo.shop import serializers
from legacy_demo.shop.models import (
    ApiToken,
    Customer,
    Invoice,
    Order,
    OrderLine,
    Product,
    Tenant,
    hash_token,
)

STATUS_FOR_CODE = {
    "VALIDATION": 400,
    "BAD_TENANT": 400,
    "AUTH": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields or {}


def error_response(code: str, message: str, fields: dict | None = None) -> JsonResponse:
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse({"error": body}, status=STATUS_FOR_CODE[code])


def stamped(body: dict, status: int = 200) -> JsonResponse:
    """Add the per-response noise fields every legacy success carries."""
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return JsonResponse(
        {**body, "generated_at": now, "trace_id": secrets.token_hex(16)}, status=status
    )


def _authenticate(request: HttpRequest) -> ApiToken:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme != "Token" or not key.strip():
        raise ApiError("AUTH", "Authentication required: send 'Authorization: Token <key>'.")
    token = ApiToken.objects.filter(key_hash=hash_token(key.strip())).first()
    if token is None:
        raise ApiError("AUTH", "Invalid token.")
    return token


def _tenant(request: HttpRequest, token: ApiToken) -> str:
    tenant = request.headers.get("X-Tenant-ID", "").strip()
    if not tenant:
        raise ApiError("BAD_TENANT", "Missing X-Tenant-ID header.")
    if not Tenant.objects.filter(code=tenant).exists():
        raise ApiError("BAD_TENANT", f"Unknown tenant {tenant!r} in X-Tenant-ID.")
    if tenant != token.tenant_id:
        raise ApiError("FORBIDDEN", f"This token may not act for tenant {tenant!r}.")
    return tenant


def api_view(*methods: str) -> Callable:
    """Method check, token auth, tenant, JSON body, and error mapping for one API view.
    HEAD is allowed wherever GET is (RFC 9110 9.3.2; Django's class-based views do the
    same), answered as GET without the body."""
    if "GET" in methods and "HEAD" not in methods:
        methods = (*methods, "HEAD")

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(
                        "METHOD_NOT_ALLOWED",
                        f"Method {request.method} not allowed; use {', '.join(methods)}.",
                    )
                token = _authenticate(request)
                tenant = _tenant(request, token)
                body = None
                if request.method in {"POST", "PUT", "PATCH"}:
                    try:
                        body = json.loads(request.body or b"null")
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise ApiError("VALIDATION", f"Malformed JSON body: {exc}.") from None
                return view(request, tenant, body, **kwargs)
            except ApiError as exc:
                response = error_response(exc.code, exc.message, exc.fields)
                if exc.code == "METHOD_NOT_ALLOWED":
                    response["Allow"] = ", ".join(methods)
                return response

        return wrapper

    return decorate


def not_found_view(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response("NOT_FOUND", f"No API endpoint at {request.path}.")


def _list_params(
    request: HttpRequest, orderings: dict | None = None, filters: dict | None = None
) -> tuple[lf.PageRequest, tuple[str, ...], dict]:
    """Page, ordering and enumerated filters, with every problem reported at once.

    `filters` maps a query parameter to its allowed values; returns the given ones.
    """
    page, errors = lf.parse_page(request.GET.dict())
    ordering: tuple[str, ...] = ()
    if orderings is not None:
        raw = request.GET.get("ordering", "id")
        if raw in orderings:
            ordering = orderings[raw]
        else:
            errors["ordering"] = [f"Must be one of {', '.join(orderings)}."]
    chosen = {}
    for name, allowed in (filters or {}).items():
        value = request.GET.get(name)
        if value is None:
            continue
        if value in allowed:
            chosen[name] = value
        else:
            errors[name] = [f"Must be one of {', '.join(allowed)}."]
    if errors:
        raise ApiError("VALIDATION", "Invalid input.", errors)
    return page, ordering, chosen


def _paged(qs: QuerySet, page: lf.PageRequest, serialize: Callable) -> dict:
    total = qs.count()
    # An offset past SQL's 64-bit integers (`page=10**30`) is a page after the last: empty,
    # as for any page past the end, not an OverflowError.
    rows = qs[page.offset : page.offset + page.page_size] if page.offset < 2**62 else []
    return {
        "page": page.page,
        "page_size": page.page_size,
        "total": total,
        "results": [serialize(row) for row in rows],
    }


def _get(model, tenant: str, **lookup):
    obj = model.objects.filter(tenant_id=tenant, **lookup).first()
    if obj is None:
        what = ", ".join(f"{k}={v}" for k, v in lookup.items())
        raise ApiError("NOT_FOUND", f"No {model.__name__.lower()} with {what} for this tenant.")
    return obj


def _require_valid(clean: dict, errors: dict) -> dict:
    if errors:
        raise ApiError("VALIDATION", "Invalid input.", errors)
    return clean


# --- customers ---------------------------------------------------------------------------


@api_view("GET")
def auth_check(request: HttpRequest, tenant: str, body) -> HttpResponse:
    """The proxy's forward authentication asks here before an extracted service answers:
    204 when the token may act for the tenant in X-Tenant-ID, the API's own 401, 403 or
    400 otherwise. The monolith stays the identity provider; services keep no tokens."""
    response = HttpResponse(status=204)
    response["X-Authenticated-Tenant"] = tenant
    return response


@api_view("GET", "POST")
def customers(request: HttpRequest, tenant: str, body) -> JsonResponse:
    if request.method == "POST":
        clean = _require_valid(*lf.validate_customer(body, partial=False, creating=True))
        c = Customer.objects.create(
            tenant_id=tenant, created_ts=lf.to_ts(datetime.now(UTC)), **clean
        )
        return stamped(serializers.customer(c), status=201)
    page, ordering, chosen = _list_params(
        request, lf.CUSTOMER_ORDERINGS, {"status": lf.CUSTOMER_STATUS}
    )
    qs = Customer.objects.filter(tenant_id=tenant)
    if "status" in chosen:
        qs = qs.filter(status_cd=chosen["status"])
    city, q = request.GET.get("city"), request.GET.get("q")
    if city is not None:
        qs = qs.filter(addr_city=city)
    if q:
        qs = qs.filter(cust_nm__icontains=q)
    return stamped(_paged(qs.order_by(*ordering), page, serializers.customer))


@api_view("GET", "PUT", "PATCH", "DELETE")
def customer(request: HttpRequest, tenant: str, body, cust_id: int) -> HttpResponse:
    c = _get(Customer, tenant, cust_id=cust_id)
    if request.method == "DELETE":
        c.delete()
        return HttpResponse(status=204)
    if request.method in {"PUT", "PATCH"}:
        partial = request.method == "PATCH"
        clean = _require_valid(*lf.validate_customer(body, partial=partial, creating=False))
        for key, value in clean.items():
            setattr(c, key, value)
        c.save(update_fields=list(clean) or None)
    return stamped(serializers.customer(c))


# --- orders ------------------------------------------------------------------------------


def _resolve_lines(tenant: str, lines: list[dict]) -> list[dict]:
    """Fill each line's unit price from the tenant's catalog; unknown SKUs are field errors."""
    skus = {line["sku"] for line in lines}
    prices = dict(
        Product.objects.filter(tenant_id=tenant, sku__in=skus).values_list("sku", "price_cents")
    )
    errors = {
        f"lines[{i}].sku": [f"Unknown SKU {line['sku']!r} for this tenant."]
        for i, line in enumerate(lines)
        if line["sku"] not in prices
    }
    if errors:
        raise ApiError("VALIDATION", "Invalid input.", errors)
    return [
        {**line, "unit_price_cents": line["unit_price_cents"] or prices[line["sku"]]}
        for line in lines
    ]


def _check_customer(tenant: str, cust_id: int) -> None:
    if not Customer.objects.filter(tenant_id=tenant, cust_id=cust_id).exists():
        raise ApiError(
            "VALIDATION", "Invalid input.", {"cust_id": [f"No customer {cust_id} for this tenant."]}
        )


def _write_lines(order: Order, lines: list[dict]) -> None:
    order.lines.all().delete()
    OrderLine.objects.bulk_create(
        OrderLine(order=order, tenant_id=order.tenant_id, **line) for line in lines
    )


@api_view("GET", "POST")
def orders(request: HttpRequest, tenant: str, body) -> JsonResponse:
    if request.method == "POST":
        clean = _require_valid(*lf.validate_order(body, partial=False, creating=True))
        _check_customer(tenant, clean["cust_id"])
        lines = _resolve_lines(tenant, clean["lines"])
        with transaction.atomic():
            o = Order.objects.create(
                tenant_id=tenant,
                customer_id=clean["cust_id"],
                status_cd=clean["status_cd"],
                total_cents=lf.order_total(lines),
                created_ts=lf.to_ts(datetime.now(UTC)),
            )
            _write_lines(o, lines)
        return stamped(serializers.order(o, o.lines.order_by("line_id")), status=201)
    page, ordering, chosen = _list_params(request, lf.ORDER_ORDERINGS, {"status": lf.ORDER_STATUS})
    qs = Order.objects.filter(tenant_id=tenant)
    if "status" in chosen:
        qs = qs.filter(status_cd=chosen["status"])
    cust = request.GET.get("cust_id")
    if cust is not None:
        if not cust.isdigit():
            raise ApiError("VALIDATION", "Invalid input.", {"cust_id": ["Enter a whole number."]})
        qs = qs.filter(customer_id=int(cust))
    qs = qs.order_by(*ordering).prefetch_related("lines")

    def one(o: Order) -> dict:
        return serializers.order(o, sorted(o.lines.all(), key=lambda ln: ln.line_id))

    return stamped(_paged(qs, page, one))


@api_view("GET", "PUT", "PATCH", "DELETE")
def order(request: HttpRequest, tenant: str, body, order_no: int) -> HttpResponse:
    o = _get(Order, tenant, order_no=order_no)
    if request.method == "DELETE":
        o.delete()
        return HttpResponse(status=204)
    if request.method in {"PUT", "PATCH"}:
        partial = request.method == "PATCH"
        clean = _require_valid(*lf.validate_order(body, partial=partial, creating=False))
        if "cust_id" in clean:
            _check_customer(tenant, clean["cust_id"])
            o.customer_id = clean["cust_id"]
        if "status_cd" in clean:
            o.status_cd = clean["status_cd"]
        with transaction.atomic():
            if "lines" in clean:
                lines = _resolve_lines(tenant, clean["lines"])
                o.total_cents = lf.order_total(lines)
                _write_lines(o, lines)
            o.save()
    return stamped(serializers.order(o, o.lines.order_by("line_id")))


# --- read-only: products, invoices ---------------------------------------------------------


@api_view("GET")
def products(request: HttpRequest, tenant: str, body) -> JsonResponse:
    page, _, _ = _list_params(request)
    qs = Product.objects.filter(tenant_id=tenant).order_by("prod_id")
    return stamped(_paged(qs, page, serializers.product))


@api_view("GET")
def product(request: HttpRequest, tenant: str, body, prod_id: int) -> JsonResponse:
    return stamped(serializers.product(_get(Product, tenant, prod_id=prod_id)))


@api_view("GET")
def invoices(request: HttpRequest, tenant: str, body) -> JsonResponse:
    page, _, chosen = _list_params(request, filters={"status": lf.INVOICE_STATUS})
    qs = Invoice.objects.filter(tenant_id=tenant)
    if "status" in chosen:
        qs = qs.filter(status_cd=chosen["status"])
    return stamped(_paged(qs.order_by("inv_id"), page, serializers.invoice))


@api_view("GET")
def invoice(request: HttpRequest, tenant: str, body, inv_id: int) -> JsonResponse:
    return stamped(serializers.invoice(_get(Invoice, tenant, inv_id=inv_id)))
