"""Error pages that say what happened: a page for browsers, a short text for htmx (shown as a toast)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

DEFAULTS = {
    403: "You do not have permission to do that.",
    404: "There is nothing here, or you do not have access to it.",
}


def _error(request: HttpRequest, status: int, exception) -> HttpResponse:
    message = str(exception) if exception and str(exception) and status == 403 else DEFAULTS[status]
    if request.headers.get("HX-Request"):
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    """403: the reason the access helper gave (e.g. only the team's reviewers can review)."""
    return _error(request, 403, exception)


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    """404: the same answer whether a thing does not exist or is not yours to see."""
    return _error(request, 404, exception)
