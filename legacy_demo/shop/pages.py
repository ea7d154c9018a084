"""Server-rendered pages for logged-in staff; a user sees only the tenants they belong to."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from legacy_demo.shop.legacy_format import price_with_tax
from legacy_demo.shop.models import Customer, Invoice, Order, Product, Tenant, TenantMember


def visible_tenants(user) -> list[str]:
    """Superusers see every tenant; everyone else only their memberships."""
    if user.is_superuser:
        return list(Tenant.objects.order_by("code").values_list("code", flat=True))
    return list(
        TenantMember.objects.filter(user=user)
        .order_by("tenant_id")
        .values_list("tenant_id", flat=True)
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    tenants = visible_tenants(request.user)
    summary = [
        {
            "tenant": t,
            "customers": Customer.objects.filter(tenant_id=t).count(),
            "orders": Order.objects.filter(tenant_id=t).count(),
            "recent_orders": Order.objects.filter(tenant_id=t).order_by("-created_ts", "order_no")[
                :5
            ],
            "recent_customers": Customer.objects.filter(tenant_id=t).order_by("-cust_id")[:5],
        }
        for t in tenants
    ]
    return render(request, "shop/home.html", {"summary": summary})


@login_required
def customer_page(request: HttpRequest, cust_id: int) -> HttpResponse:
    c = Customer.objects.filter(
        cust_id=cust_id, tenant_id__in=visible_tenants(request.user)
    ).first()
    if c is None:
        raise Http404(f"No customer {cust_id} visible to you.")
    orders = c.orders.order_by("-created_ts", "order_no")[:50]
    return render(request, "shop/customer.html", {"c": c, "orders": orders})


@login_required
def order_page(request: HttpRequest, order_no: int) -> HttpResponse:
    o = (
        Order.objects.select_related("customer")
        .filter(order_no=order_no, tenant_id__in=visible_tenants(request.user))
        .first()
    )
    if o is None:
        raise Http404(f"No order {order_no} visible to you.")
    names = dict(
        Product.objects.filter(
            tenant_id=o.tenant_id, sku__in=[ln.sku for ln in o.lines.all()]
        ).values_list("sku", "prod_nm")
    )
    lines = [
        {"sku": ln.sku, "name": names.get(ln.sku, "?"), "qty": ln.qty,
         "unit": _dollars(ln.unit_price_cents), "amount": _dollars(ln.qty * int(ln.unit_price_cents))}
        for ln in o.lines.order_by("line_id")
    ]  # fmt: skip
    invoices = Invoice.objects.filter(order=o).order_by("inv_id")
    return render(
        request,
        "shop/order.html",
        {"o": o, "lines": lines, "total": _dollars(o.total_cents), "invoices": invoices},
    )


def _dollars(cents: int | str) -> str:
    return price_with_tax(cents, "0")


def health(request: HttpRequest) -> JsonResponse:
    """Liveness plus a trivial query, so "healthy" means the database answers too."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - report any database failure as unhealthy
        return JsonResponse({"status": "unhealthy", "db": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok", "db": "ok", "service": "legacy"})
