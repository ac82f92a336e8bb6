"""What a page's poller tells the person using it besides its own cards: what to notify them of, and the review
queue as it changes under them.

Notices are found in a window of time (the poller's `since`, less LAG for rows committed a moment late); each has
a key, which the browser uses as the notification's tag and remembers, so a notice found twice is shown once.
The review queue is compared with the ids the page shows, so a clip a teammate decided leaves it and a clip newly
waiting joins it, each exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.urls import reverse

from studio import access
from studio.models import Render, ReviewState, State

LAG = timedelta(seconds=10)  # a row committed this long after its timestamp still counts
NOTIFIED_STATES = {
    State.COMPLETED: "Your render is ready",
    State.FAILED: "Your render failed",
    State.BLOCKED: "Your render was blocked",
    State.EXPIRED: "Your render expired",
}
REVIEWED = {
    ReviewState.APPROVED: "Your clip was approved",
    ReviewState.CHANGES_REQUESTED: "Changes were requested on your clip",
    ReviewState.REJECTED: "Your clip was rejected",
}
MAX_NOTICES = (
    10  # a burst (a batch finishing) is summed up by the browser's tags; no page needs more per poll
)
PROMPT_CHARS = 80


@dataclass(frozen=True)
class Notice:
    """One thing to tell the user with a browser notification."""

    key: str  # unique per event: the notification's tag
    title: str
    body: str
    url: str


def _short(prompt: str) -> str:
    return prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 1] + "…"


def notices(user, since: datetime, reviewer_teams: set) -> list[Notice]:
    """What happened for `user` since `since`: their renders that ended, clips newly waiting for their review,
    and their clips reviewed by someone else."""
    after = since - LAG
    found: list[Notice] = []
    ended = Render.objects.filter(user=user, finished_at__gte=after, state__in=list(NOTIFIED_STATES))
    for item in ended.order_by("finished_at")[:MAX_NOTICES]:
        body = _short(item.prompt)
        if item.state != State.COMPLETED and item.error:
            body = f"{body}\n{item.shown_error}"
        found.append(
            Notice(
                f"ended-{item.pk}",
                NOTIFIED_STATES[State(item.state)],
                body,
                reverse("detail", args=[item.pk]),
            )
        )
    if reviewer_teams:
        waiting = access.to_review(user, team_ids=reviewer_teams).filter(
            Q(finished_at__gte=after) | Q(reviewed_at__gte=after)
        )
        for item in waiting.order_by("finished_at")[:MAX_NOTICES]:
            moment = (item.reviewed_at or item.finished_at or since).timestamp()
            found.append(
                Notice(
                    f"waiting-{item.pk}-{moment:.0f}",
                    "A clip waits for your review",
                    f"{item.user.get_username()} in {item.team.name if item.team else 'a team'}: {_short(item.prompt)}",
                    reverse("detail", args=[item.pk]),
                )
            )
    reviewed = (
        Render.objects.filter(user=user, reviewed_at__gte=after, review_state__in=list(REVIEWED))
        .exclude(reviewed_by=user)
        .select_related("reviewed_by")
    )
    for item in reviewed.order_by("reviewed_at")[:MAX_NOTICES]:
        who = item.reviewed_by.get_username() if item.reviewed_by else "a former member"
        found.append(
            Notice(
                f"reviewed-{item.pk}-{item.reviewed_at.timestamp():.0f}"
                if item.reviewed_at
                else f"reviewed-{item.pk}",
                REVIEWED[ReviewState(item.review_state)],
                f"by {who}: {_short(item.prompt)}",
                reverse("detail", args=[item.pk]),
            )
        )
    return found


@dataclass(frozen=True)
class QueueChanges:
    """How a review queue page must change: the clips to take off it and the clips to add at its end."""

    gone: list[uuid.UUID]
    added: list[Render]


def queue_changes(user, shown: Iterable[uuid.UUID], reviewer_teams: set, limit: int) -> QueueChanges:
    """Compare the clips a queue page shows with what waits now. A clip the user decided stays on their page (its
    buttons say what they chose, and they may change their mind); one a teammate decided, or that is gone, leaves."""
    shown = set(shown)
    waiting = access.to_review(user, team_ids=reviewer_teams).order_by("created_at", "pk")
    waiting_ids = set(waiting.filter(pk__in=shown).values_list("pk", flat=True)) if shown else set()
    mine = set(
        Render.objects.filter(pk__in=shown - waiting_ids, reviewed_by=user).values_list("pk", flat=True)
    )
    gone = sorted(shown - waiting_ids - mine, key=str)
    room = max(0, limit - len(shown - set(gone)))
    added = list(waiting.exclude(pk__in=shown)[:room]) if room else []
    return QueueChanges(gone=gone, added=added)
