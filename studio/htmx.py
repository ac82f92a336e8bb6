"""Rendering several partials into one HTMX response (the first is the target's, the rest out of band)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def render_partials(request: HttpRequest, *parts: tuple[str, dict], status: int = 200) -> HttpResponse:
    """Concatenate `("page.html#partial", context)` renders into one HTML response."""
    html = "".join(render_to_string(name, context, request=request) for name, context in parts)
    return HttpResponse(html, status=status)
