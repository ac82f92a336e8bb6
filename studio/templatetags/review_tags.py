"""Template helpers for review and comments: who may review a card, and moments in a clip as people read them."""

from __future__ import annotations

from datetime import timedelta

from django import template

from studio import access

register = template.Library()


@register.simple_tag(takes_context=True)
def review_allowed(context, render) -> bool:
    """Whether the page's user may review `render`: `can_review` if the page gave it, else one lookup.

    A page listing many cards gives `can_review`, or `reviewer_team_ids` (one query for the page), so that the
    review actions cost no query per card; on its own the partial asks the access helper.
    """
    given = context.get("can_review")
    if given is not None:
        return bool(given)
    team_ids = context.get("reviewer_team_ids")
    if team_ids is not None:
        return render.team_id in team_ids and not render.private
    user = context.get("user")
    if user is None and context.get("request") is not None:
        user = context["request"].user
    return user is not None and access.can_review(user, render)


@register.filter
def clip_time(seconds) -> str:
    """A moment in a clip: 12.34 -> "0:12.3"."""
    if seconds is None:
        return ""
    tenths = int(float(seconds) * 10)  # truncated, as the player shows it: never a moment past the one pinned
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes}:{tenths // 10:02d}.{tenths % 10}"


@register.filter
def span(delta: timedelta | None) -> str:
    """A duration as people read it: "42 s", "3 min 05 s", "1 h 02 min"."""
    if delta is None:
        return "—"
    seconds = max(0, round(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


@register.filter
def signed_dollars(amount) -> str:
    """A difference in dollars with its sign: "+$0.02", "−$0.10", "$0.00"."""
    if amount is None:
        return "—"
    sign = "+" if amount > 0 else "−" if amount < 0 else ""
    return f"{sign}${abs(amount):.2f}"
