"""Views for a clip's detail page, its review and comments, and the "to review" queue.

Each view: decorators, access helper, one action, a page or partial. Who may review: a reviewer or admin of the
render's team, including on their own renders (the queue leaves those out, as it lists others' work); private
renders are never reviewed, and only finished clips are.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from studio import access
from studio.actions.renders import do_toggle_private
from studio.actions.review import do_add_comment, do_review_render
from studio.forms import CommentForm, ReviewForm
from studio.htmx import AuthenticatedHtmxRequest, render_partials
from studio.models import Render, State
from studio.money import ledger
from studio.views.operator import panel_context
from studio.views.shares import share_links_context

QUEUE_SIZE = 100


def _rejected(form: forms.Form) -> HttpResponse:
    """A 400 whose plain text the page shows as a toast."""
    text = " ".join(str(error) for errors in form.errors.values() for error in errors)
    return _bad_request(text)


def _bad_request(text: str) -> HttpResponse:
    return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")


def _reviews(item: Render) -> list:
    return list(item.reviews.select_related("reviewer").order_by("-created_at", "-pk"))


def _comments(item: Render) -> list:
    """Pinned comments in the order of the clip, then the ones about the whole clip, each group oldest first."""
    order = (F("at_seconds").asc(nulls_last=True), "created_at", "pk")
    return list(item.comments.select_related("author").order_by(*order))


def _detail_context(request: AuthenticatedHtmxRequest, item: Render) -> dict:
    visible = Render.objects.for_user(request.user)
    billed = item.billed_cost
    return {
        "render": item,
        "can_review": access.viewer(request).can_review(item),
        "is_author": item.user_id == request.user.pk,
        "reviews": _reviews(item),
        "comments": _comments(item),
        "parent": visible.filter(pk=item.parent_id).first() if item.parent_id else None,
        "promotions": list(visible.filter(parent=item).order_by("created_at")),
        "cost_difference": billed - item.estimated_cost if billed is not None else None,
        "rerun_cost": ledger.quote(
            item.model, item.params
        ).total,  # at today's rates, as the re-run is billed
        "rerun_token": uuid.uuid4(),  # a double-clicked re-run is one render, as in the studio form
        "clip_seconds": item.clip_seconds,
        "ledger": list(item.ledger.all()),  # what holding, settling or releasing this render cost
        **(panel_context(item) if request.user.is_staff else {}),
        **(share_links_context(request, item) if access.can_share(request.user, item) else {}),
    }


@login_required
@require_safe
def detail(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """One clip: player, prompt, parameters, cost, timings, review, comments, lineage and actions."""
    item = access.get_render_for_user(request.user, render_id)
    return render(request, "detail.html", _detail_context(request, item))


@login_required
@require_POST
def review(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Record a review decision; answers with the review actions, and from the detail page its history too."""
    item = access.get_render_for_user(request.user, render_id, access.Need.REVIEW)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _rejected(form)
    if item.state != State.COMPLETED:
        return _bad_request("Only finished clips can be reviewed.")
    do_review_render(item, request.user, form.cleaned_data["state"], form.cleaned_data["note"])
    messages.success(request, f"Marked “{item.get_review_state_display()}”.")
    if not request.htmx:
        return redirect("detail", render_id=item.pk)
    where = request.POST.get("from")
    on_detail, on_queue = where == "detail", where == "queue"
    history = [("detail.html#review-history", {"reviews": _reviews(item), "oob_history": True})]
    queue_count = [("review_queue.html#queue-count", {"oob_count": True})]  # the heading follows the badge
    actions = {"render": item, "can_review": True, "on_detail": on_detail, "on_queue": on_queue}
    return render_partials(
        request,
        ("partials/review_actions.html", actions),
        *(history if on_detail else []),
        *(queue_count if on_queue else []),
        ("base.html#to-review-badge", {"oob_badge": True}),  # the nav's count follows the decision
    )


@login_required
@require_POST
def comment_add(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Add a comment, optionally pinned to a moment of the clip; answers with the comments list."""
    item = access.get_render_for_user(request.user, render_id)
    form = CommentForm(request.POST, clip_seconds=item.clip_seconds)
    if not form.is_valid():
        return _rejected(form)
    do_add_comment(item, request.user, form.cleaned_data["text"], form.cleaned_data["at"])
    if not request.htmx:
        return redirect(reverse("detail", args=[item.pk]) + "#comments")
    return render(request, "detail.html#comments", {"render": item, "comments": _comments(item)})


@login_required
@require_POST
def private(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Make a render private or shared with its team (its author only); the review actions follow."""
    item = access.get_render_for_user(request.user, render_id, access.Need.OWN)
    value = request.POST.get("private")
    if value not in ("0", "1"):
        return _bad_request("Say whether the render should be private (1) or shared (0).")
    item = do_toggle_private(item, value == "1")
    if not request.htmx:
        return redirect("detail", render_id=item.pk)
    review_actions = {"render": item, "on_detail": True, "oob_review": True}
    return render_partials(
        request,
        ("detail.html#privacy", {"render": item, "is_author": True}),
        ("partials/review_actions.html", review_actions),
    )


@login_required
@require_safe
def review_queue(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Finished clips waiting for this user's review, oldest first, each with its review actions."""
    team_ids = access.viewer(request).reviewer_team_ids
    renders = []
    if team_ids:
        waiting = (
            access.to_review(request.user, team_ids=team_ids)
            .select_related("reviewed_by")
            .order_by("created_at", "pk")
        )
        renders = list(waiting[:QUEUE_SIZE])
    context = {
        "renders": renders,
        "reviews_somewhere": bool(team_ids),
        "can_review": True,
        "limit": QUEUE_SIZE,
        "live_queue": True,  # the page's poller brings teammates' decisions and new clips (views/live.py)
    }
    return render(request, "review_queue.html", context)


urlpatterns: list = [
    path("renders/<uuid:render_id>/detail/", detail, name="detail"),
    path("renders/<uuid:render_id>/review/", review, name="review"),
    path("renders/<uuid:render_id>/comments/", comment_add, name="comment_add"),
    path("renders/<uuid:render_id>/private/", private, name="private"),
    path("review/", review_queue, name="review_queue"),
]
