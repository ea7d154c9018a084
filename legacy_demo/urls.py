from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import path, re_path

from legacy_demo.shop import api, pages

urlpatterns = [
    path("health", pages.health, name="health"),
    path("api/auth/check", api.auth_check),
    path("api/customers", api.customers),
    path("api/customers/<int:cust_id>", api.customer),
    path("api/orders", api.orders),
    path("api/orders/<int:order_no>", api.order),
    path("api/products", api.products),
    path("api/products/<int:prod_id>", api.product),
    path("api/invoices", api.invoices),
    path("api/invoices/<int:inv_id>", api.invoice),
    re_path(r"^api(?:/(?P<path>.*))?$", api.not_found_view),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", pages.home, name="home"),
    path("customers/<int:cust_id>/", pages.customer_page, name="customer"),
    path("orders/<int:order_no>/", pages.order_page, name="order"),
]

if settings.SERVE_STATIC:
    # Demo only: admin CSS without collectstatic or a web server in front.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", serve_static, kwargs={"insecure": True}))
