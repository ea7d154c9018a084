import re

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, TestCase

from legacy_demo.shop.models import Customer, Order, TenantMember


class PagesTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        call_command(
            "seed", customers=12, products=6, orders=12, admin_password="adminpw", stdout=_Null()
        )
        cls.clerk = get_user_model().objects.create_user("clerk", password="clerkpw")
        TenantMember.objects.create(user=cls.clerk, tenant_id="acme")

    def login_with_csrf(self, username, password):
        client = Client(enforce_csrf_checks=True)
        page = client.get("/accounts/login/")
        token = re.search(
            r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
        ).group(1)
        response = client.post(
            "/accounts/login/",
            {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"},
        )
        return client, response

    def test_anonymous_users_are_sent_to_login(self):
        for path in ("/", "/customers/1/", "/orders/1/"):
            response = self.client.get(path)
            self.assertEqual(response.status_code, 302)
            self.assertTrue(response["Location"].startswith(f"/accounts/login/?next={path}"))

    def test_login_requires_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        client.get("/accounts/login/")
        response = client.post("/accounts/login/", {"username": "admin", "password": "adminpw"})
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("_auth_user_id", client.session)

    def test_login_with_csrf_then_pages_render(self):
        client, response = self.login_with_csrf("admin", "adminpw")
        self.assertEqual((response.status_code, response["Location"]), (302, "/"))
        home = client.get("/").content.decode()
        self.assertIn('id="tenant-acme"', home)
        self.assertIn('id="tenant-globex"', home)
        c = Customer.objects.get(cust_id=2)
        page = client.get("/customers/2/").content.decode()
        self.assertIn(c.cust_nm.replace("'", "&#x27;"), page)
        o = Order.objects.first()
        order_page = client.get(f"/orders/{o.order_no}/").content.decode()
        cents = int(o.total_cents)
        self.assertIn(f'id="order-total">${cents // 100}.{cents % 100:02d}<', order_page)

    def test_wrong_password_does_not_log_in(self):
        client, response = self.login_with_csrf("admin", "wrong")
        self.assertEqual(response.status_code, 200)
        self.assertIn("didn", response.content.decode())
        self.assertEqual(client.get("/").status_code, 302)

    def test_members_see_only_their_tenants(self):
        client, _ = self.login_with_csrf("clerk", "clerkpw")
        home = client.get("/").content.decode()
        self.assertIn('id="tenant-acme"', home)
        self.assertNotIn('id="tenant-globex"', home)
        acme = Customer.objects.filter(tenant_id="acme").first().cust_id
        globex = Customer.objects.filter(tenant_id="globex").first().cust_id
        self.assertEqual(client.get(f"/customers/{acme}/").status_code, 200)
        self.assertEqual(client.get(f"/customers/{globex}/").status_code, 404)
        foreign_order = Order.objects.filter(tenant_id="globex").first().order_no
        self.assertEqual(client.get(f"/orders/{foreign_order}/").status_code, 404)

    def test_logout_is_a_csrf_protected_post(self):
        client, _ = self.login_with_csrf("admin", "adminpw")
        self.assertEqual(client.post("/accounts/logout/").status_code, 403)
        token = client.cookies["csrftoken"].value
        self.assertEqual(
            client.post("/accounts/logout/", {"csrfmiddlewaretoken": token}).status_code, 302
        )
        self.assertEqual(client.get("/").status_code, 302)

    def test_admin_for_superuser_only(self):
        self.assertEqual(self.client.get("/admin/shop/customer/").status_code, 302)
        self.client.force_login(self.clerk)
        self.assertEqual(self.client.get("/admin/shop/customer/").status_code, 302)
        self.client.force_login(get_user_model().objects.get(username="admin"))
        first = Customer.objects.order_by("-cust_id").first()
        self.assertContains(self.client.get("/admin/shop/customer/"), first.email_addr)

    def test_health(self):
        response = self.client.get("/health")
        self.assertEqual((response.status_code, response.json()["status"]), (200, "ok"))


class _Null:
    def write(self, *_):
        pass

    def flush(self):
        pass
