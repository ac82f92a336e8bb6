"""Share links outside the team: made and revoked from the clip's detail page by its author or a team admin; the
public page and its video, served without a login while the link is live.

The public URLs carry a signed link id (access.share_token): a forged or unknown one is 404, an expired or revoked
one (or one whose clip is gone) is 410 with a page that says so, and its video URL stops working with it. The video
goes through ranged.serve_clip, the one function that serves clips.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from studio import access
from studio.actions.shares import do_count_share_view, do_create_share, do_revoke_share
from studio.htmx import AuthenticatedHtmxRequest
from studio.models import SHARE_DEFAULT_DAYS, SHARE_LIFETIMES, Render, ShareLink
from studio.ranged import serve_clip


def _bad_request(text: str) -> HttpResponse:
    return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")


def share_links_context(request: HttpRequest, item: Render) -> dict:
    """What the detail page's share panel shows: every link of the clip, newest first, with its public URL."""
    links = list(item.share_links.select_related("created_by"))
    for link in links:
        link.url = request.build_absolute_uri(reverse("share", args=[access.share_token(link)]))
    return {
        "render": item,
        "can_share": True,
        "share_links": links,
        "lifetimes": SHARE_LIFETIMES,
        "default_days": SHARE_DEFAULT_DAYS,
    }


def _answer(request: AuthenticatedHtmxRequest, item: Render) -> HttpResponse:
    if not request.htmx:
        return redirect(reverse("detail", args=[item.pk]) + "#share-links")
    return render(request, "partials/share_links.html", share_links_context(request, item))


@login_required
@require_POST
def share_create(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """A new share link for a finished clip (its author or a team admin), live for the days chosen."""
    item = access.get_render_for_user(request.user, render_id, access.Need.SHARE)
    if not item.playable:
        return _bad_request("Only a finished clip can be shared.")
    days = request.POST.get("days", str(SHARE_DEFAULT_DAYS))
    if not days.isdigit() or int(days) not in SHARE_LIFETIMES:
        return _bad_request("Choose how long the link works: " + ", ".join(SHARE_LIFETIMES.values()) + ".")
    do_create_share(item, request.user, int(days))
    return _answer(request, item)


@login_required
@require_POST
def share_revoke(
    request: AuthenticatedHtmxRequest, render_id: uuid.UUID, share_id: uuid.UUID
) -> HttpResponse:
    """Revoke a share link at once: its page and its video stop working."""
    link = access.get_share_for_user(request.user, render_id, share_id)
    do_revoke_share(link, request.user)
    return _answer(request, link.render)


def _gone(request: HttpRequest, link: ShareLink) -> HttpResponse:
    return render(request, "share.html", {"gone": True, "link": link}, status=410)


@require_safe
def share(request: HttpRequest, token: str) -> HttpResponse:
    """The public page of a share link: the player and the prompt, nothing else; each GET is a view."""
    try:
        link = access.get_share_for_token(token)
    except access.ShareGone as gone:
        return _gone(request, gone.link)
    if request.method == "GET":
        do_count_share_view(link)
    return render(request, "share.html", {"link": link, "render": link.render, "token": token})


@require_safe
def share_video(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    """The shared clip, while its link is live (Range requests too, so the player seeks); not counted as a view."""
    try:
        link = access.get_share_for_token(token)
    except access.ShareGone:
        return HttpResponse("This share link no longer works.", status=410, content_type="text/plain")
    return serve_clip(request, link.render)


urlpatterns = [
    path("renders/<uuid:render_id>/shares/", share_create, name="share_create"),
    path("renders/<uuid:render_id>/shares/<uuid:share_id>/revoke/", share_revoke, name="share_revoke"),
    path("s/<str:token>/", share, name="share"),
    path("s/<str:token>/video.mp4", share_video, name="share_video"),
]
