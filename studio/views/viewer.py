"""The review viewer: one clip in the full window, moving through the list it was opened from; and a frame of a
clip as a PNG.

The viewer's URL names the clip and the list (`list=gallery` with the gallery's filters, or `list=review`, the
queue in its order), so it can be shared within the team and opens on that clip; `from=detail` makes Esc go back
to the clip's detail page. Previous and next are worked out on the server from the clip's place in the list
(gallery.neighbours), so a clip that left the list (just reviewed) still has its neighbours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_safe

from studio import access, media, storage
from studio.catalog import FRAME_RATE
from studio.forms import FrameForm
from studio.gallery import MINE, SORTS, TEAM, gallery_renders, neighbours, parse_filters, sort_value
from studio.htmx import AuthenticatedHtmxRequest
from studio.models import Render
from studio.params import BadValue
from studio.views.decorators import answers_400
from studio.views.review import _comments

LISTS = {"gallery": "Gallery", "review": "To review"}
GALLERY_PARAMS = ("scope", "author", "model", "state", "review", "starred", "tag", "q", "sort")


@dataclass(frozen=True)
class ViewerList:
    """Where the viewer is: its list's name, the query that keeps it, and the URLs around the clip."""

    label: str
    query: str
    previous_url: str
    next_url: str
    close_url: str


def _kept_query(params: QueryDict) -> str:
    """The query string that keeps the list (the gallery's filters without its page cursor), empty values dropped."""
    query = QueryDict(mutable=True)
    for name in ("list", "from", *GALLERY_PARAMS):
        if value := params.get(name, ""):
            query[name] = value
    return query.urlencode()


def viewer_url(render_id, query: str) -> str:
    return reverse("viewer", args=[render_id]) + (f"?{query}" if query else "")


def _list_around(request: AuthenticatedHtmxRequest, item: Render) -> ViewerList:
    """The list the viewer moves through, and the clips before and after `item` in it; BadValue for a bad query."""
    params = request.GET
    name = params.get("list", "gallery")
    if name not in LISTS:
        raise BadValue("list must be “gallery” or “review”.")
    if params.get("from", "") not in ("", "detail"):
        raise BadValue("from must be “detail” (or absent).")
    if name == "review":
        renders = access.to_review(request.user, team_ids=access.viewer(request).reviewer_team_ids)
        previous, following = neighbours(renders, "created_at", item.created_at, item.pk, descending=False)
        close = reverse("review_queue")
    else:
        team = access.viewer(request).active_team
        # The list, not a page of it: a gallery page's cursor (from an infinite-scroll card) is dropped.
        filters = parse_filters(QueryDict(_kept_query(params)), default_scope=TEAM if team else MINE)
        renders = gallery_renders(request.user, filters, team)
        value = sort_value(item, filters.sort)
        previous, following = neighbours(renders, SORTS[filters.sort], value, item.pk, descending=True)
        gallery_query = QueryDict(_kept_query(params), mutable=True)
        for gone in ("list", "from"):
            gallery_query.pop(gone, None)
        close = reverse("gallery") + (f"?{gallery_query.urlencode()}" if gallery_query else "")
    if params.get("from") == "detail":
        close = reverse("detail", args=[item.pk])
    query = _kept_query(params)
    return ViewerList(
        label=LISTS[name],
        query=query,
        previous_url=viewer_url(previous, query) if previous else "",
        next_url=viewer_url(following, query) if following else "",
        close_url=close,
    )


@login_required
@require_safe
@answers_400
def viewer(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """One clip in the full window, for watching and reviewing with the keyboard; htmx gets just the stage."""
    item = access.get_render_for_user(request.user, render_id)
    context = {
        "render": item,
        "list": _list_around(request, item),
        "comments": _comments(item),
        "clip_seconds": item.clip_seconds,
        "frame_rate": FRAME_RATE,
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "viewer.html#viewer-stage", context)
    return render(request, "viewer.html", context)


@login_required
@require_safe
def frame(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """The frame of the clip at `t` seconds, as a PNG download, taken from the file with ffmpeg."""
    item = access.get_render_for_user(request.user, render_id)
    if not item.playable:
        return HttpResponse(
            "This render has no clip to take a frame from.", status=404, content_type="text/plain"
        )
    form = FrameForm(request.GET, clip_seconds=item.clip_seconds)
    if not form.is_valid():
        text = " ".join(str(error) for errors in form.errors.values() for error in errors)
        return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")
    t = form.cleaned_data["t"]
    # ffmpeg reads the clip where it is stored: the local file, or a short-lived link to the object store.
    name = item.video.name or ""  # set: the clip is playable
    source = Path(item.video.path) if storage.is_local() else storage.signed_url(name, "video/mp4")
    try:
        png = media.frame_png(source, t)
    except media.MediaError as error:
        return HttpResponse(str(error), status=500, content_type="text/plain; charset=utf-8")
    response = HttpResponse(png, content_type="image/png")
    name = f"studio-{item.model}-{str(item.pk)[:8]}-{t:.3f}s.png"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, max-age=3600"  # the same moment of the same file is the same frame
    return response


urlpatterns = [
    path("renders/<uuid:render_id>/view/", viewer, name="viewer"),
    path("renders/<uuid:render_id>/frame.png", frame, name="frame"),
]
