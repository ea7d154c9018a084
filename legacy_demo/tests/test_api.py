import json

from django.core.management import call_command
from django.test import TestCase

from legacy_demo.shop.models import ApiToken, Customer, Order

ACME = {"HTTP_AUTHORIZATION": "Token demo-token-acme", "HTTP_X_TENANT_ID": "acme"}


class SeededTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        call_command(
            "seed", customers=30, products=12, orders=60, admin_password="pw", stdout=_Null()
        )

    def get(self, path, headers=ACME, **query):
        return self.client.get(path, query, **headers)

    def send(self, method, path, body, headers=ACME):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return getattr(self.client, method)(path, data, content_type="application/json", **headers)


class _Null:
    def write(self, *_):
        pass

    def flush(self):
        pass


class AuthAndTenantTests(SeededTestCase):
    def assert_error(self, response, status, code):
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response.json()["error"]["code"], code)

    def test_missing_or_wrong_token_is_401(self):
        self.assert_error(self.client.get("/api/customers", HTTP_X_TENANT_ID="acme"), 401, "AUTH")
        bad = {"HTTP_AUTHORIZATION": "Token nope", "HTTP_X_TENANT_ID": "acme"}
        self.assert_error(self.get("/api/customers", headers=bad), 401, "AUTH")
        bearer = {"HTTP_AUTHORIZATION": "Bearer demo-token-acme", "HTTP_X_TENANT_ID": "acme"}
        self.assert_error(self.get("/api/customers", headers=bearer), 401, "AUTH")

    def test_missing_unknown_or_foreign_tenant(self):
        no_tenant = {"HTTP_AUTHORIZATION": "Token demo-token-acme"}
        self.assert_error(self.get("/api/customers", headers=no_tenant), 400, "BAD_TENANT")
        unknown = {**ACME, "HTTP_X_TENANT_ID": "umbrella"}
        self.assert_error(self.get("/api/customers", headers=unknown), 400, "BAD_TENANT")
        # A valid acme token cannot read globex by claiming the header.
        foreign = {**ACME, "HTTP_X_TENANT_ID": "globex"}
        self.assert_error(self.get("/api/customers", headers=foreign), 403, "FORBIDDEN")

    def test_tokens_are_stored_hashed(self):
        self.assertFalse(ApiToken.objects.filter(key_hash="demo-token-acme").exists())
        self.assertEqual(ApiToken.objects.count(), 3)

    def test_unknown_api_path_and_method_use_legacy_error_shape(self):
        self.assert_error(self.get("/api/nothing"), 404, "NOT_FOUND")
        self.assert_error(self.get("/api/customers/"), 404, "NOT_FOUND")
        response = self.send("post", "/api/products", {})
        self.assert_error(response, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(response["Allow"], "GET, HEAD")  # HEAD wherever GET (RFC 9110)
        head = self.client.head("/api/products", **ACME)
        self.assertEqual(head.status_code, 200)


class CustomerApiTests(SeededTestCase):
    def test_list_pagination_and_noise_fields(self):
        first = self.get("/api/customers", page_size=4).json()
        again = self.get("/api/customers", page_size=4).json()
        total = Customer.objects.filter(tenant_id="acme").count()
        self.assertEqual((first["page"], first["page_size"], first["total"]), (1, 4, total))
        self.assertEqual([c["cust_id"] for c in first["results"]], [1, 4, 7, 10])
        self.assertEqual({c["tenant_id"] for c in first["results"]}, {"acme"})
        self.assertNotEqual(first["trace_id"], again["trace_id"])
        self.assertRegex(first["generated_at"], r"^\d{4}-\d\d-\d\dT.*Z$")
        page3 = self.get("/api/customers", page=3, page_size=4).json()
        self.assertEqual([c["cust_id"] for c in page3["results"]], [25, 28])

    def test_filters_and_ordering(self):
        everyone = self.get("/api/customers", page_size=100).json()["results"]
        inactive = self.get("/api/customers", status="I", page_size=100).json()["results"]
        self.assertEqual(inactive, [c for c in everyone if c["status_cd"] == "I"])
        city = everyone[0]["addr_city"]
        in_city = self.get("/api/customers", city=city, page_size=100).json()["results"]
        self.assertEqual(in_city, [c for c in everyone if c["addr_city"] == city])
        family = everyone[0]["cust_nm"].split(",")[0]
        found = self.get("/api/customers", q=family.lower(), page_size=100).json()["results"]
        self.assertEqual(found, [c for c in everyone if family.lower() in c["cust_nm"].lower()])
        by_name = self.get("/api/customers", ordering="name", page_size=100).json()["results"]
        self.assertEqual(by_name, sorted(everyone, key=lambda c: (c["cust_nm"], c["cust_id"])))
        newest = self.get("/api/customers", ordering="-created", page_size=100).json()["results"]
        self.assertEqual(newest[0]["created_ts"], max(c["created_ts"] for c in everyone))
        bad = self.get("/api/customers", ordering="email", page_size=0).json()["error"]
        self.assertEqual(set(bad["fields"]), {"ordering", "page_size"})

    def test_crud_cycle(self):
        body = {"cust_nm": "DOE, Jane", "email_addr": "jane@example.com", "addr_zip": "12345"}
        created = self.send("post", "/api/customers", body)
        self.assertEqual(created.status_code, 201, created.content)
        c = created.json()
        self.assertEqual((c["status_cd"], c["tenant_id"], c["addr_zip"]), ("A", "acme", "12345"))
        self.assertRegex(c["created_ts"], r"^\d{14}$")
        url = f"/api/customers/{c['cust_id']}"
        full = {
            k: c[k]
            for k in ("cust_nm", "email_addr", "phone_no", "addr_line1", "addr_city", "addr_zip")
        }
        put = self.send("put", url, {**full, "cust_nm": "ROE, Jane", "status_cd": "I"})
        self.assertEqual(put.status_code, 200, put.content)
        self.assertEqual((put.json()["cust_nm"], put.json()["status_cd"]), ("ROE, Jane", "I"))
        patched = self.send("patch", url, {"addr_city": "Shelbyville"}).json()
        self.assertEqual((patched["addr_city"], patched["cust_nm"]), ("Shelbyville", "ROE, Jane"))
        self.assertEqual(self.get(url).json()["addr_city"], "Shelbyville")
        deleted = self.client.delete(url, **ACME)
        self.assertEqual((deleted.status_code, deleted.content), (204, b""))
        self.assertEqual(self.get(url).status_code, 404)

    def test_validation_errors_name_fields(self):
        response = self.send("post", "/api/customers", {"cust_nm": "Jane Doe", "email_addr": "x"})
        self.assertEqual(response.status_code, 400)
        error = response.json()["error"]
        self.assertEqual((error["code"], error["message"]), ("VALIDATION", "Invalid input."))
        self.assertEqual(error["fields"]["email_addr"], ["Enter a valid email address."])
        self.assertIn("cust_nm", error["fields"])
        malformed = self.send("post", "/api/customers", "{not json")
        self.assertEqual(malformed.json()["error"]["code"], "VALIDATION")
        put = self.send("put", "/api/customers/1", {"cust_nm": "DOE, Jane"})
        self.assertIn("email_addr", put.json()["error"]["fields"])

    def test_other_tenants_customer_is_not_found(self):
        globex_id = Customer.objects.filter(tenant_id="globex").first().cust_id
        self.assertEqual(
            self.get(f"/api/customers/{globex_id}").json()["error"]["code"], "NOT_FOUND"
        )
        self.assertEqual(self.client.delete(f"/api/customers/{globex_id}", **ACME).status_code, 404)
        self.assertTrue(Customer.objects.filter(cust_id=globex_id).exists())


class OrderAndCatalogApiTests(SeededTestCase):
    def test_order_list_detail_and_create(self):
        listing = self.get("/api/orders", page_size=5).json()
        first = listing["results"][0]
        self.assertEqual(
            set(first),
            {"order_no", "cust_id", "status_cd", "total_cents", "created_ts", "lines", "tenant_id"},
        )
        self.assertEqual(
            first["total_cents"],
            str(sum(ln["qty"] * int(ln["unit_price_cents"]) for ln in first["lines"])),
        )
        detail = self.get(f"/api/orders/{first['order_no']}").json()
        self.assertEqual(detail["lines"], first["lines"])
        sku = self.get("/api/products").json()["results"][0]
        created = self.send(
            "post", "/api/orders", {"cust_id": 1, "lines": [{"sku": sku["sku"], "qty": 3}]}
        )
        self.assertEqual(created.status_code, 201, created.content)
        self.assertEqual(created.json()["total_cents"], str(3 * int(sku["price_cents"])))
        url = f"/api/orders/{created.json()['order_no']}"
        self.assertEqual(self.send("patch", url, {"status_cd": "P"}).json()["status_cd"], "P")
        self.assertEqual(self.client.delete(url, **ACME).status_code, 204)
        self.assertFalse(Order.objects.filter(order_no=created.json()["order_no"]).exists())

    def test_order_validation(self):
        foreign_cust = Customer.objects.filter(tenant_id="globex").first().cust_id
        response = self.send(
            "post", "/api/orders", {"cust_id": foreign_cust, "lines": [{"sku": "NOPE", "qty": 1}]}
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("cust_id", response.json()["error"]["fields"])

    def test_products_have_half_up_price_with_tax(self):
        products = self.get("/api/products", page_size=100).json()
        self.assertEqual(products["total"], 4)
        p = products["results"][0]
        self.assertEqual(
            set(p),
            {"prod_id", "sku", "prod_nm", "price_cents", "tax_rate", "price_with_tax", "tenant_id"},
        )
        detail = self.get(f"/api/products/{p['prod_id']}").json()
        self.assertEqual(detail["price_with_tax"], p["price_with_tax"])
        self.assertIn("trace_id", detail)

    def test_invoices_read_only(self):
        listing = self.get("/api/invoices", status="P").json()
        self.assertTrue(listing["results"])
        self.assertEqual({i["status_cd"] for i in listing["results"]}, {"P"})
        inv = listing["results"][0]
        self.assertEqual(
            self.get(f"/api/invoices/{inv['inv_id']}").json()["amount_cents"], inv["amount_cents"]
        )
        self.assertEqual(
            self.client.delete(f"/api/invoices/{inv['inv_id']}", **ACME).status_code, 405
        )
