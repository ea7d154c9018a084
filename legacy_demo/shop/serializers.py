"""Model rows to the legacy JSON shapes (duck-typed: anything with the attributes works)."""

from __future__ import annotations

from legacy_demo.shop.legacy_format import price_with_tax


def customer(c) -> dict:
    return {
        "cust_id": c.cust_id,
        "cust_nm": c.cust_nm,
        "email_addr": c.email_addr,
        "phone_no": c.phone_no,
        "addr_line1": c.addr_line1,
        "addr_city": c.addr_city,
        "addr_zip": c.addr_zip,
        "status_cd": c.status_cd,
        "created_ts": c.created_ts,
        "tenant_id": c.tenant_id,
    }


def order(o, lines) -> dict:
    return {
        "order_no": o.order_no,
        "cust_id": o.customer_id,
        "status_cd": o.status_cd,
        "total_cents": o.total_cents,
        "created_ts": o.created_ts,
        "lines": [
            {"sku": ln.sku, "qty": ln.qty, "unit_price_cents": ln.unit_price_cents} for ln in lines
        ],
        "tenant_id": o.tenant_id,
    }


def product(p) -> dict:
    return {
        "prod_id": p.prod_id,
        "sku": p.sku,
        "prod_nm": p.prod_nm,
        "price_cents": p.price_cents,
        "tax_rate": p.tax_rate,
        "price_with_tax": price_with_tax(p.price_cents, p.tax_rate),
        "tenant_id": p.tenant_id,
    }


def invoice(i) -> dict:
    return {
        "inv_id": i.inv_id,
        "order_no": i.order_id,
        "amount_cents": i.amount_cents,
        "status_cd": i.status_cd,
        "issued_ts": i.issued_ts,
        "tenant_id": i.tenant_id,
    }
