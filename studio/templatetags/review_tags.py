"""Template helper for review: who may review a card."""

from __future__ import annotations

from django import template

from studio import access

register = template.Library()


@register.simple_tag(takes_context=True)
def review_allowed(context, render) -> bool:
    """Whether the page's user may review `render`: `can_review` if the page gave it, else the access helper's
    answer, from the teams the request has read already (access.viewer) when there is a request.

    A page listing many cards gives `can_review` (from gallery.mark_reviewable), so that the review actions cost
    nothing per card.
    """
    given = context.get("can_review")
    if given is not None:
        return bool(given)
    request = context.get("request")
    if request is not None:
        return access.viewer(request).can_review(render)
    user = context.get("user")
    return user is not None and access.can_review(user, render)
