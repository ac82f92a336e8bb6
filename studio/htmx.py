"""HTMX helpers: the typed request views receive, rendering several partials into one response (the first is the
target's, the rest out of band), and the answer that puts a render's card on the studio page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django_htmx.middleware import HtmxDetails

from studio.cursor import Cursor
from studio.gallery import VariantGroup

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from studio.models import Render


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's HtmxMiddleware, which sets `request.htmx` on every request.

    For type checking only (the pattern of django-htmx's docs): views annotate their request with it.
    """

    htmx: HtmxDetails


class AuthenticatedHtmxRequest(HtmxHttpRequest):
    """A request to a `login_required` view: its user is a logged-in User, never AnonymousUser.

    For type checking only (django-stubs' documented `AuthenticatedHttpRequest` pattern).
    """

    user: User


def render_partials(request: HttpRequest, *parts: tuple[str, dict], status: int = 200) -> HttpResponse:
    """Concatenate `("page.html#partial", context)` renders into one HTML response."""
    html = "".join(render_to_string(name, context, request=request) for name, context in parts)
    return HttpResponse(html, status=status)


def request_cursor(request: HttpRequest) -> Cursor:
    """The cursor of the studio page that sent this request (its poller's inputs ride along), else a fresh one."""
    sent = Cursor.from_query(request.POST)
    now = timezone.now()
    return sent if sent is not None and sent.since <= now else Cursor.fresh(now)


def card_answer(request: HttpRequest, item: Render, *also: tuple[str, dict]) -> HttpResponse:
    """A render's card for the top of the studio page's list (where the request targets it) or, when the page shows
    it already (a repeated submit), in place; then the `also` partials, and the page's poller restarted."""
    cursor = request_cursor(request)
    return render_partials(
        request,
        ("studio.html#render", {"render": item, "oob_card": None if cursor.is_new(item) else "true"}),
        *also,
        ("studio.html#poll", {"polling": True, "cursor": cursor.adding(item), "oob_poll": True}),
    )


def group_answer(request: HttpRequest, renders: list[Render], *also: tuple[str, dict]) -> HttpResponse:
    """The cards of a "Render ×N" group, framed as one group, for the top of the studio page's list; then the
    `also` partials, and the page's poller restarted (knowing every card of the group)."""
    cursor = request_cursor(request)
    later = cursor
    for item in renders:
        later = later.adding(item)
    cards: list[tuple[str, dict]]
    if any(cursor.is_new(item) for item in renders):
        cards = [("studio.html#variant-group", {"group": VariantGroup(renders)})]
    else:  # a repeated submit: the page shows the group already, so its cards are refreshed in place
        cards = [("studio.html#render", {"render": item, "oob_card": "true"}) for item in renders]
    return render_partials(
        request,
        *cards,
        *also,
        ("studio.html#poll", {"polling": True, "cursor": later, "oob_poll": True}),
    )
