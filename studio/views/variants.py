"""The contact sheet (issue 12): the takes of one "Render ×N" side by side, played in sync, to pick the keeper.

Who may open it: anyone who may see the render named in the URL (Need.VIEW; an outsider gets 404); it shows the
takes of its group they may see. The keeper is promoted through the studio form (`?promote=<id>`), as from a card.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_safe

from studio import access
from studio.gallery import VariantGroup
from studio.htmx import AuthenticatedHtmxRequest


@login_required
@require_safe
def variants(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """The contact sheet of the group `render_id` belongs to (a render on its own: a sheet of one)."""
    takes = access.get_variants_for_user(request.user, render_id)
    current = next(item for item in takes if item.pk == render_id)
    group = VariantGroup(takes)
    return render(request, "variants.html", {"group": group, "current": current, "first": takes[0]})


urlpatterns = [
    path("renders/<uuid:render_id>/variants/", variants, name="variants"),
]
