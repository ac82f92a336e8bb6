"""Staff-only views: the operator actions on a render (the staff panel of its detail page) and resolving a gateway
alert from the banner.

Each goes through the access helper first (a render the operator cannot see is 404, as for anyone), answers 403 to
everyone but staff, runs one action of `lifecycle.operator` (a conditional update, safe to repeat) and answers with
what became of it as a toast, and the refreshed panel (htmx) or a redirect back (a plain form).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from studio import access
from studio.htmx import AuthenticatedHtmxRequest, render_partials
from studio.lifecycle import operator
from studio.models import GatewayAlert, Render


def panel_context(item: Render) -> dict:
    """What the staff panel (detail.html#staff-panel) shows: the render and the actions that apply to it now."""
    return {"render": item, "operator_actions": operator.applicable(item)}


def _open_alerts(render_id: uuid.UUID) -> set[int]:
    return set(
        GatewayAlert.objects.filter(render_id=render_id, resolved_at__isnull=True).values_list(
            "pk", flat=True
        )
    )


def _answer(
    request: AuthenticatedHtmxRequest, render_id: uuid.UUID, outcome: operator.Outcome, alerts: set[int]
) -> HttpResponse:
    """The outcome as a toast; the staff panel and the status panel as they are now, and the banners of the
    render's alerts (`alerts`: open before the action) that the action closed taken off the page."""
    (messages.success if outcome.done else messages.warning)(request, outcome.message)
    if not request.htmx:
        return redirect(reverse("detail", args=[render_id]) + "#staff-panel")
    item = access.get_render_for_user(request.user, render_id, access.Need.OPERATE)
    return render_partials(
        request,
        ("detail.html#staff-panel", panel_context(item)),
        ("detail.html#status", {"render": item, "oob_status": True}),
        ("base.html#closed-alerts", {"closed_alerts": sorted(alerts - _open_alerts(render_id))}),
    )


@login_required
@require_POST
def attach(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """A render whose submission outcome is unknown did reach the gateway as the task given: poll it from now on."""
    item = access.get_render_for_user(request.user, render_id, access.Need.OPERATE)
    alerts = _open_alerts(item.pk)
    return _answer(request, item.pk, operator.attach(item.pk, request.POST.get("task_id", "")), alerts)


@login_required
@require_POST
def not_sent(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """It never reached the gateway: release its hold (resubmit=0) or send it again (resubmit=1)."""
    item = access.get_render_for_user(request.user, render_id, access.Need.OPERATE)
    value = request.POST.get("resubmit")
    if value not in ("0", "1"):
        return HttpResponse(
            "Say whether to send it again (resubmit=1) or only release its hold (resubmit=0).",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    alerts = _open_alerts(item.pk)
    return _answer(request, item.pk, operator.not_sent(item.pk, resubmit=value == "1"), alerts)


@login_required
@require_POST
def recheck(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Ask the gateway about a stalled render (or an unknown one with a task id) now; resume it if it answers."""
    item = access.get_render_for_user(request.user, render_id, access.Need.OPERATE)
    alerts = _open_alerts(item.pk)
    return _answer(request, item.pk, operator.recheck(item.pk), alerts)


@login_required
@require_POST
def resolve_alert(request: AuthenticatedHtmxRequest, alert_id: int) -> HttpResponse:
    """Resolve a gateway alert from the banner (a credentials alert also sends what waited on it)."""
    alert = access.get_alert_for_operator(request.user, alert_id)
    outcome = operator.resolve_alert(alert)
    (messages.success if outcome.done else messages.info)(
        request, f"{alert.get_kind_display()}: {outcome.message}"
    )
    if request.htmx:
        return HttpResponse("")  # the banner is replaced by nothing; the toast rides along out of band
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure())
    return redirect(back if safe and back else "studio")


urlpatterns: list = [
    path("renders/<uuid:render_id>/operator/attach/", attach, name="operator_attach"),
    path("renders/<uuid:render_id>/operator/not-sent/", not_sent, name="operator_not_sent"),
    path("renders/<uuid:render_id>/operator/recheck/", recheck, name="operator_recheck"),
    path("alerts/<int:alert_id>/resolve/", resolve_alert, name="alert_resolve"),
]
