from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "legacy_demo.shop"
    label = "shop"
    verbose_name = "Acme Shop"
