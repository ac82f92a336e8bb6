"""The page poller of every page but the studio's (which has its own, with its cards): the nav's review badge,
browser notifications and, on the review queue, the queue itself, as out-of-band swaps."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_safe

from studio import access, live
from studio.cursor import parse_time, parse_uuids
from studio.htmx import AuthenticatedHtmxRequest, render_partials
from studio.views.review import QUEUE_SIZE


def live_parts(request: AuthenticatedHtmxRequest, since: datetime) -> list[tuple[str, dict]]:
    """What every poll answer carries besides its own: the review badge (for reviewers) and the notices."""
    teams = access.viewer(request).reviewer_team_ids
    parts: list[tuple[str, dict]] = []
    if teams:
        parts.append(("base.html#to-review-badge", {"oob_badge": True}))
    notices = live.notices(request.user, since, teams)
    if notices:
        parts.append(("base.html#notices", {"notices": notices, "oob_notices": True}))
    return parts


def _queue_parts(request: AuthenticatedHtmxRequest, teams: set[int]) -> list[tuple[str, dict]]:
    """The review queue page's changes: its heading's count, clips teammates decided off, new clips on."""
    if not teams:
        return []
    shown = list(parse_uuids(request.GET.getlist("queued")[:QUEUE_SIZE]))
    changes = live.queue_changes(request.user, shown, teams, QUEUE_SIZE)
    return [
        ("review_queue.html#queue-count", {"oob_count": True}),
        (
            "review_queue.html#queue-changes",
            {"gone": changes.gone, "added": changes.added, "can_review": True},
        ),
    ]


@login_required
@require_safe
def poll(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """A page's poller: what changed for the user since `since`, out of band, and the poller for the next tick."""
    since = parse_time(request.GET.get("since", ""))
    if since is None:
        return HttpResponseBadRequest("since must be an ISO-8601 timestamp with a time zone")
    now = timezone.now()  # before the queries: what happens meanwhile is found by the next poll
    on_queue = request.GET.get("queue") == "1"
    teams = access.viewer(request).reviewer_team_ids
    return render_partials(
        request,
        ("base.html#live-poll", {"live_since": now, "live_queue": on_queue}),
        *live_parts(request, since),
        *(_queue_parts(request, teams) if on_queue else []),
    )


urlpatterns: list = [path("live/", poll, name="live")]
