"""Operator views: renders (read-only facts), gateway alerts (resolve them), and the poller lease."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from studio.models import GatewayAlert, Lease, Render


@admin.register(Render)
class RenderAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "model", "state", "estimated_cost", "billed_cost", "created_at")
    list_filter = ("state", "model")
    search_fields = ("prompt", "gateway_task_id", "user__username")
    date_hierarchy = "created_at"
    # The pre-signed result URL and the idempotency token are internals; everything else is read-only fact.
    exclude = ("result_url", "client_token")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(GatewayAlert)
class GatewayAlertAdmin(admin.ModelAdmin):
    list_display = ("kind", "message", "created_at", "pauses_submissions_until", "resolved_at")
    list_filter = ("kind", "resolved_at")
    actions = ["resolve"]

    @admin.action(description="Resolve (and resume submissions)")
    def resolve(self, request, queryset) -> None:
        queryset.filter(resolved_at__isnull=True).update(
            resolved_at=timezone.now(), pauses_submissions_until=None
        )


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ("name", "holder", "expires_at")
