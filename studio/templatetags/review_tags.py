"""Template helper for review: who may review a card."""

from __future__ import annotations

from django import template

from studio import access

register = template.Library()


@register.simple_tag(takes_context=True)
def review_allowed(context, render) -> bool:
    """Whether the page's user may review `render`: `can_review` if the page gave it, else one lookup.

    A page listing many cards gives `can_review` (from gallery.mark_reviewable: one query for the page), so that
    the review actions cost no query per card; on its own the partial asks the access helper, the rule's one home.
    """
    given = context.get("can_review")
    if given is not None:
        return bool(given)
    user = context.get("user")
    if user is None and context.get("request") is not None:
        user = context["request"].user
    return user is not None and access.can_review(user, render)
