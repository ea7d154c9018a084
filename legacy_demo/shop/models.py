"""The legacy schema, quirks included: `tbl_*` tables, string cents and string timestamps.

Every table carries `tenant_id`; every index a list query needs starts with it, so a tenant's
page never scans other tenants' rows.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models


def hash_token(key: str) -> str:
    """Tokens are stored hashed: a leaked database dump does not leak working API keys."""
    return hashlib.sha256(key.encode()).hexdigest()


class Tenant(models.Model):
    code = models.CharField(primary_key=True, max_length=32)
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "tbl_tenant"

    def __str__(self) -> str:
        return self.code


class Customer(models.Model):
    cust_id = models.AutoField(primary_key=True)
    tenant_id = models.CharField(max_length=32)
    cust_nm = models.CharField(max_length=200, help_text="FAMILY, Given")
    email_addr = models.CharField(max_length=254)
    phone_no = models.CharField(max_length=32, blank=True, default="")
    addr_line1 = models.CharField(max_length=200, blank=True, default="")
    addr_city = models.CharField(max_length=100, blank=True, default="")
    addr_zip = models.CharField(max_length=10, blank=True, default="")
    status_cd = models.CharField(max_length=1, default="A")
    created_ts = models.CharField(max_length=14, help_text="UTC YYYYMMDDHHMMSS")

    class Meta:
        db_table = "tbl_customer"
        indexes = [
            models.Index(fields=["tenant_id", "cust_id"], name="ix_cust_tenant_id"),
            models.Index(
                fields=["tenant_id", "status_cd", "cust_id"], name="ix_cust_tenant_status"
            ),
            models.Index(fields=["tenant_id", "addr_city", "cust_id"], name="ix_cust_tenant_city"),
            models.Index(fields=["tenant_id", "cust_nm", "cust_id"], name="ix_cust_tenant_name"),
            models.Index(
                fields=["tenant_id", "created_ts", "cust_id"], name="ix_cust_tenant_created"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cust_id} {self.cust_nm}"


class Product(models.Model):
    prod_id = models.AutoField(primary_key=True)
    tenant_id = models.CharField(max_length=32)
    sku = models.CharField(max_length=32)
    prod_nm = models.CharField(max_length=200)
    price_cents = models.CharField(max_length=12)
    tax_rate = models.CharField(max_length=8)

    class Meta:
        db_table = "tbl_product"
        indexes = [models.Index(fields=["tenant_id", "prod_id"], name="ix_prod_tenant_id")]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "sku"], name="uq_prod_tenant_sku")
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.prod_nm}"


class Order(models.Model):
    order_no = models.AutoField(primary_key=True)
    tenant_id = models.CharField(max_length=32)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, db_column="cust_id", related_name="orders",
        db_index=False,
    )  # fmt: skip
    status_cd = models.CharField(max_length=1, default="N")
    total_cents = models.CharField(max_length=14, default="0")
    created_ts = models.CharField(max_length=14)

    class Meta:
        db_table = "tbl_order"
        indexes = [
            models.Index(fields=["tenant_id", "order_no"], name="ix_order_tenant_no"),
            models.Index(fields=["tenant_id", "customer", "order_no"], name="ix_order_tenant_cust"),
            models.Index(
                fields=["tenant_id", "status_cd", "order_no"], name="ix_order_tenant_status"
            ),
            models.Index(
                fields=["tenant_id", "created_ts", "order_no"], name="ix_order_tenant_created"
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.order_no}"


class OrderLine(models.Model):
    line_id = models.AutoField(primary_key=True)
    tenant_id = models.CharField(max_length=32)
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, db_column="order_no", related_name="lines",
        db_index=False,
    )  # fmt: skip
    sku = models.CharField(max_length=32)
    qty = models.IntegerField()
    unit_price_cents = models.CharField(max_length=12)

    class Meta:
        db_table = "tbl_order_line"
        indexes = [
            models.Index(fields=["tenant_id", "order", "line_id"], name="ix_line_tenant_order")
        ]


class Invoice(models.Model):
    inv_id = models.AutoField(primary_key=True)
    tenant_id = models.CharField(max_length=32)
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, db_column="order_no", related_name="invoices",
        db_index=False,
    )  # fmt: skip
    amount_cents = models.CharField(max_length=14)
    status_cd = models.CharField(max_length=1, default="O")
    issued_ts = models.CharField(max_length=14)

    class Meta:
        db_table = "tbl_invoice"
        indexes = [
            models.Index(fields=["tenant_id", "inv_id"], name="ix_inv_tenant_id"),
            models.Index(fields=["tenant_id", "order", "inv_id"], name="ix_inv_tenant_order"),
            models.Index(fields=["tenant_id", "status_cd", "inv_id"], name="ix_inv_tenant_status"),
        ]


class ApiToken(models.Model):
    """One key per tenant: the tenant a token may act for is fixed here, not by the client."""

    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="first characters, to recognise a key")
    tenant_id = models.CharField(max_length=32)
    label = models.CharField(max_length=100, blank=True, default="")
    created_ts = models.CharField(max_length=14)

    class Meta:
        db_table = "tbl_api_token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant_id})"


class TenantMember(models.Model):
    """Which tenants a (non-superuser) staff user may see in the HTML pages."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    tenant_id = models.CharField(max_length=32)

    class Meta:
        db_table = "tbl_tenant_member"
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant_id"], name="uq_member_user_tenant")
        ]
