"""Operator views: renders (read-only facts, and the operator actions of studio.lifecycle.operator), gateway
alerts (resolve them), the poller lease, invitations and share links (look them up, revoke them). Attaching a task
id asks for it on an intermediate page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from studio import access
from studio.actions.shares import do_revoke_share
from studio.actions.teams import do_revoke_invitation
from studio.lifecycle import operator
from studio.models import GatewayAlert, Invitation, Lease, Render, ShareLink


class AttachForm(forms.Form):
    task_id = forms.CharField(
        label="Gateway task id",
        max_length=128,
        help_text="The id the gateway's task list shows for this render's prompt and time.",
    )


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

    actions = ["attach", "recheck", "not_sent", "not_sent_resubmit"]

    def _each(self, request, queryset, act) -> None:
        for render in queryset:
            outcome = act(render.pk)
            self.message_user(
                request, f"{render.pk}: {outcome.message}", "success" if outcome.done else "warning"
            )

    @admin.action(description="Attach to a gateway task…")
    def attach(self, request, queryset) -> TemplateResponse | None:
        """Ask for the task id on an intermediate page (Django's pattern for an action with input), then attach."""
        if len(queryset) != 1:
            self.message_user(
                request,
                "Attach one render at a time: a gateway task belongs to one render.",
                messages.WARNING,
            )
            return None
        (render,) = queryset
        form = AttachForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            outcome = operator.attach(render.pk, form.cleaned_data["task_id"])
            self.message_user(
                request,
                f"{render.pk}: {outcome.message}",
                messages.SUCCESS if outcome.done else messages.WARNING,
            )
            return None  # back to the list, which shows the message
        context = {
            **self.admin_site.each_context(request),
            "title": "Attach to a gateway task",
            "opts": self.model._meta,
            "render": render,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "applies": operator.ATTACH in operator.applicable(render),
        }
        return TemplateResponse(request, "admin/studio/render/attach.html", context)

    @admin.action(description="Recheck at the gateway now (stalled, or outcome unknown with a task id)")
    def recheck(self, request, queryset) -> None:
        self._each(request, queryset, operator.recheck)

    @admin.action(description="Never reached the gateway: release the hold")
    def not_sent(self, request, queryset) -> None:
        self._each(request, queryset, operator.not_sent)

    @admin.action(description="Never reached the gateway: send it again")
    def not_sent_resubmit(self, request, queryset) -> None:
        self._each(request, queryset, lambda pk: operator.not_sent(pk, resubmit=True))


@admin.register(GatewayAlert)
class GatewayAlertAdmin(admin.ModelAdmin):
    list_display = ("kind", "message", "created_at", "pauses_submissions_until", "resolved_at")
    list_filter = ("kind", "resolved_at")
    actions = ["resolve"]

    @admin.action(description="Resolve (and send the renders that waited on it)")
    def resolve(self, request, queryset) -> None:
        for alert in queryset.filter(resolved_at__isnull=True):
            self.message_user(request, f"{alert}: {operator.resolve_alert(alert).message}")


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ("name", "holder", "expires_at")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made on the team page or with `manage.py team invite` (which show the link); here they are
    looked up and revoked. Every field is read-only: a used invitation is a record of who joined."""

    list_display = ("team", "role", "username", "email", "status", "created_by", "created_at", "expires_at")
    list_filter = ("role", "team")
    search_fields = ("username", "email", "team__name", "team__slug")
    date_hierarchy = "created_at"
    readonly_fields = ("link",)
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ["link", *(f.name for f in self.model._meta.fields)]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="link (path)")
    def link(self, obj: Invitation) -> str:
        return access.invitation_path(obj)

    @admin.action(description="Revoke (their links stop working)")
    def revoke(self, request, queryset) -> None:
        revoked = sum(do_revoke_invitation(invitation) for invitation in queryset)
        self.message_user(
            request, f"{revoked} invitation(s) revoked; the others were already used or revoked."
        )


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Share links are made on a clip's page by its author or a team admin; here an operator finds every live
    link (a clip shared outside a team by mistake, say) and revokes it. Every field is read-only: the link's URL is
    signed and is not shown here; its row is the record of who shared what, and how often it was seen."""

    list_display = (
        "render",
        "created_by",
        "created_at",
        "expires_at",
        "live",
        "revoked_at",
        "revoked_by",
        "views",
    )
    list_filter = ("revoked_at",)
    search_fields = ("render__id", "render__prompt", "created_by__username")
    date_hierarchy = "created_at"
    list_select_related = ("render", "created_by", "revoked_by")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, never deleted: the row is the record

    @admin.display(boolean=True)
    def live(self, obj: ShareLink) -> bool:
        return obj.is_live

    @admin.action(description="Revoke (their links stop working at once)")
    def revoke(self, request, queryset) -> None:
        live = [link for link in queryset if link.revoked_at is None]
        for link in live:
            do_revoke_share(link, request.user)
        self.message_user(request, f"{len(live)} link(s) revoked; the others were already revoked.")
