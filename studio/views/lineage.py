"""Re-run exactly and the lineage page (issue 4). Promote and remix are the studio page's `?promote=<id>` and
`?remix=<id>` (studio.views.studio): they pre-fill its form and submit through it.

Who may re-run: anyone who may view the render (Need.VIEW), not only its author. A re-run is a new render owned
by, and billed to, whoever asks, in their active team and within their budgets; it changes nothing of the
original, and a teammate could make the same render by remixing it without changes anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from studio import access, pricing
from studio.actions.renders import RerunOutcome, do_rerun_render
from studio.forms import RerunRefused, rerun_order
from studio.htmx import AuthenticatedHtmxRequest, card_answer
from studio.models import Render
from studio.money import ledger

MAX_DEPTH = 5  # promotions are one level deep (a parent is always a draft); this bounds a corrupt chain


@dataclass(frozen=True)
class Lineage:
    """A draft and the Pro renders promoted from it, as one user may see them."""

    root_id: uuid.UUID
    draft: Render | None  # None when the root is not shared with the user
    promotions: list[Render]

    @property
    def renders(self) -> list[Render]:
        return ([self.draft] if self.draft else []) + self.promotions

    @property
    def total(self) -> Decimal:
        """The lineage's combined cost: billed where there is a bill, else estimated."""
        return sum((item.shown_cost for item in self.renders), Decimal("0"))


def lineage_for(user, item: Render) -> Lineage:
    """The render's lineage as `user` may see it: the root draft and the root's Pro renders, oldest first.

    A parent is always a draft and a draft never has one, so the root is the render's parent or the render
    itself and one query fetches it with all its promotions, however many; a deeper chain costs a query a level.
    """
    root_id = item.parent_id or item.pk
    for _ in range(MAX_DEPTH):
        rows = list(
            Render.objects.for_user(user)
            .filter(Q(pk=root_id) | Q(parent_id=root_id))
            .select_related("user")
            .order_by("created_at")
        )
        root = next((row for row in rows if row.pk == root_id), None)
        if root is None or root.parent_id is None:
            break
        root_id = root.parent_id
    return Lineage(root_id, root, [row for row in rows if row.pk != root_id])


@login_required
@require_safe
def lineage(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """A draft and its Pro renders side by side, with synchronised players and the lineage's combined cost."""
    current = access.get_render_for_user(request.user, render_id)
    family = lineage_for(request.user, current)
    card = ledger.rate_card()  # the re-run buttons' prices, from one read of the live rate card
    for item in family.renders:
        item.rerun_cost = pricing.estimate(item.model, item.params, card).total
        item.rerun_token = uuid.uuid4()  # a double-clicked re-run is one render, as in the studio form
    return render(request, "lineage.html", {"current": current, "lineage": family})


@login_required
@require_POST
def rerun(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Render a clip again exactly, as the requester's own new render; the toast says what it costs."""
    original = access.get_render_for_user(request.user, render_id)  # VIEW: see the module docstring
    try:
        order = rerun_order(request.user, original, request.POST.get("client_token", ""))
    except RerunRefused as refused:
        outcome = RerunOutcome(None, str(refused))
    else:
        outcome = do_rerun_render(request.user, order)
    if outcome.render is None:
        if request.htmx:
            return HttpResponse(outcome.message, status=400, content_type="text/plain")  # shown as a toast
        messages.error(request, outcome.message)
        return redirect("lineage", original.pk)
    messages.success(request, outcome.message)
    if (
        request.htmx and request.htmx.target == "render-list"
    ):  # the studio's own card: add the new card on top
        return card_answer(request, outcome.render)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("studio"))
    return redirect("studio")


urlpatterns = [
    path("renders/<uuid:render_id>/lineage/", lineage, name="lineage"),
    path("renders/<uuid:render_id>/rerun/", rerun, name="rerun"),
]
