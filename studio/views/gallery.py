"""Views for the gallery: "My renders" and the team gallery with filters and infinite scroll; stars and tags."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_POST, require_safe

from studio import access
from studio.actions.gallery import do_add_tag, do_remove_tag, do_toggle_star
from studio.catalog import MODEL_CHOICES
from studio.gallery import (
    ANY_STATE,
    MINE,
    SCOPES,
    SORT_LABELS,
    TEAM,
    gallery_page,
    gallery_renders,
    group_variants,
    mark_reviewable,
    next_page_query,
    parse_filters,
)
from studio.htmx import AuthenticatedHtmxRequest
from studio.models import ReviewState, State
from studio.params import BadValue
from studio.views.decorators import answers_400


@login_required
@require_safe
@answers_400
def gallery(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """A grid of clips, filtered and sorted; an HTMX request (filter change or scroll) gets just the page."""
    viewer = access.viewer(request)
    team = viewer.active_team
    filters = parse_filters(request.GET, default_scope=TEAM if team else MINE)
    page = gallery_page(gallery_renders(request.user, filters, team), filters)
    mark_reviewable(page.renders, viewer.reviewer_team_ids, request.user.pk)
    context = {
        "page": page,
        "items": group_variants(page.renders),
        "filters": filters,
        "scope": filters.scope,
        "first_page": filters.cursor is None,
        "next_query": next_page_query(request.GET, filters, page.next_cursor) if page.next_cursor else "",
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "gallery.html#gallery-page", context)
    return render(request, "gallery.html", {**context, **_filter_bar(team, filters)})


def _filter_bar(team, filters) -> dict:
    """The choices the filter bar offers; the team's members are the authors to pick from."""
    authors = []
    if filters.scope == TEAM and team is not None:
        authors = list(
            get_user_model()
            .objects.filter(memberships__team=team)
            .order_by("username")
            .values_list("username", flat=True)
        )
    return {
        "team": team,
        "scopes": SCOPES,
        "authors": authors,
        "models": dict(MODEL_CHOICES),
        "states": [(ANY_STATE, "Any state"), *State.choices],
        "reviews": ReviewState.choices,
        "sorts": SORT_LABELS,
    }


@dataclass(frozen=True)
class StarButton:
    """What the star button partial (gallery.html#star) reads of its `render`: which clip, and whether this user
    starred it. In the gallery that is a render with the `is_starred` annotation (gallery.gallery_renders)."""

    pk: uuid.UUID
    is_starred: bool


@login_required
@require_POST
def star(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Star or unstar a clip for the current user; answers with the star button."""
    item = access.get_render_for_user(request.user, render_id)
    starred = do_toggle_star(request.user, item)
    return render(request, "gallery.html#star", {"render": StarButton(item.pk, starred)})


@login_required
@require_POST
def tag_add(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Tag a clip; a bad name leaves the tags as they were and says why in a toast."""
    item = access.get_render_for_user(request.user, render_id)
    try:
        do_add_tag(request.user, item, request.POST.get("name", ""))
    except BadValue as error:
        messages.error(request, str(error))
    return render(request, "gallery.html#tags", {"render": item})


@login_required
@require_POST
def tag_remove(request: AuthenticatedHtmxRequest, render_id: uuid.UUID, name: str) -> HttpResponse:
    """Remove a tag from a clip (already gone is fine); answers with the tags."""
    item = access.get_render_for_user(request.user, render_id)
    do_remove_tag(item, name)
    return render(request, "gallery.html#tags", {"render": item})


urlpatterns = [
    path("gallery/", gallery, name="gallery"),
    path("renders/<uuid:render_id>/star/", star, name="star"),
    path("renders/<uuid:render_id>/tags/", tag_add, name="tag_add"),
    # <path:>, not <str:>: a tag may contain "/" ("Q3/2025", "<b>x</b>"); gallery.clean_tag_name keeps out the
    # names a browser or proxy would rewrite in a URL ("..", "a//b").
    path("renders/<uuid:render_id>/tags/<path:name>/delete/", tag_remove, name="tag_remove"),
]
