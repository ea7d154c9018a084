from django.contrib import admin

from legacy_demo.shop import models


@admin.register(models.Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("cust_id", "tenant_id", "cust_nm", "email_addr", "addr_city", "status_cd")
    list_filter = ("tenant_id", "status_cd")
    search_fields = ("cust_nm", "email_addr")


@admin.register(models.Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("prod_id", "tenant_id", "sku", "prod_nm", "price_cents", "tax_rate")
    list_filter = ("tenant_id",)


class OrderLineInline(admin.TabularInline):
    model = models.OrderLine
    extra = 0


@admin.register(models.Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("order_no", "tenant_id", "customer_id", "status_cd", "total_cents")
    list_filter = ("tenant_id", "status_cd")
    raw_id_fields = ("customer",)
    inlines = [OrderLineInline]


@admin.register(models.Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("inv_id", "tenant_id", "order_id", "amount_cents", "status_cd")
    list_filter = ("tenant_id", "status_cd")
    raw_id_fields = ("order",)


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "tenant_id", "label", "created_ts")
    readonly_fields = ("key_hash", "prefix")


admin.site.register(models.Tenant)
admin.site.register(models.TenantMember)
