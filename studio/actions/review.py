"""Review actions: a decision in the render's history, and comments pinned to a moment."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from studio.models import Render


def do_review_render(render: Render, reviewer, state: str, note: str = ""):
    """Record a review decision: a row in the history, and the render's latest state, who and when, at once.

    The render keeps the newest decision even when two reviewers click at the same moment: an older decision
    committed late is kept in the history but does not overwrite a newer one.
    """
    now = timezone.now()
    with transaction.atomic():
        review = render.reviews.create(reviewer=reviewer, state=state, note=note, created_at=now)
        Render.objects.filter(Q(reviewed_at__isnull=True) | Q(reviewed_at__lte=now), pk=render.pk).update(
            review_state=state, reviewed_by=reviewer, reviewed_at=now, updated_at=now
        )
    render.refresh_from_db(fields=["review_state", "reviewed_by", "reviewed_at", "updated_at"])
    if render.reviewed_by_id == reviewer.pk:
        render.reviewed_by = reviewer  # spare the page a query for who it was
    return review


def do_add_comment(render: Render, author, text: str, at_seconds: float | None = None):
    """Add a comment to a clip, optionally pinned to a moment in it (validated by the caller's form)."""
    return render.comments.create(author=author, text=text, at_seconds=at_seconds)
