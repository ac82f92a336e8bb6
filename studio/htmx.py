"""HTMX helpers: the typed request views receive, and rendering several partials into one response (the first is
the target's, the rest out of band)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    from django.contrib.auth.models import User


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
