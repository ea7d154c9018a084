"""List queries must be served by a tenant-first index, not a scan of every tenant's rows."""

from django.db import connection
from django.test import TestCase

from legacy_demo.shop.models import Customer, Invoice, Order


def plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


class IndexUsageTests(TestCase):
    def assert_uses(self, queryset, index: str):
        text = plan(queryset)
        self.assertRegex(text, rf"SEARCH \S+ USING (COVERING )?INDEX {index} \(tenant_id=", text)
        # A full sort would read every matching row first; "RIGHT PART" only sorts ties
        # (descending date, ascending id) within what the index already ordered.
        self.assertNotIn("USE TEMP B-TREE FOR ORDER BY", text, text)

    def test_customer_list_queries(self):
        acme = Customer.objects.filter(tenant_id="acme")
        self.assert_uses(acme.order_by("cust_id")[:50], "ix_cust_tenant_id")
        self.assert_uses(acme.order_by("cust_nm", "cust_id")[:50], "ix_cust_tenant_name")
        self.assert_uses(acme.order_by("created_ts", "cust_id")[:50], "ix_cust_tenant_created")
        self.assert_uses(acme.order_by("-created_ts", "cust_id")[:50], "ix_cust_tenant_created")
        self.assert_uses(
            acme.filter(status_cd="A").order_by("cust_id")[:50], "ix_cust_tenant_status"
        )
        self.assert_uses(
            acme.filter(addr_city="Springfield").order_by("cust_id")[:50], "ix_cust_tenant_city"
        )

    def test_count_uses_tenant_index(self):
        text = plan(Customer.objects.filter(tenant_id="acme").values("tenant_id"))
        self.assertIn("USING COVERING INDEX", text)

    def test_order_and_invoice_lists(self):
        self.assert_uses(
            Order.objects.filter(tenant_id="acme").order_by("order_no")[:50], "ix_order_tenant_no"
        )
        self.assert_uses(
            Order.objects.filter(tenant_id="acme", customer_id=3).order_by("order_no"),
            "ix_order_tenant_cust",
        )
        self.assert_uses(
            Invoice.objects.filter(tenant_id="acme").order_by("inv_id")[:50], "ix_inv_tenant_id"
        )

    def test_the_detector_can_fail(self):
        # An unindexed predicate is a SCAN; an ordering no index covers is a full temp sort.
        self.assertIn("SCAN", plan(Customer.objects.filter(email_addr="x@example.com")))
        unsorted = plan(Customer.objects.filter(tenant_id="acme").order_by("email_addr"))
        self.assertIn("USE TEMP B-TREE FOR ORDER BY", unsorted)
