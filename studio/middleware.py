"""HTMX glue: flash messages ride along as out-of-band toasts; redirects become full-page HX-Redirects."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect


class HtmxMessagesMiddleware:
    """Append queued messages to HTMX responses as an out-of-band swap into #toasts."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        if not getattr(request, "htmx", False) or response.streaming:
            return response
        if "HX-Redirect" in response or "HX-Refresh" in response:
            return (
                response  # the page is left or reloaded: queued messages wait in the session for the next one
            )
        if response.status_code in (301, 302, 303) and response.get("Location"):
            # htmx would follow a redirect inside the fragment (e.g. the login page into a card): go there instead.
            redirect = HttpResponseClientRedirect(response["Location"])
            redirect.status_code = 204  # nothing to swap
            patch_vary_headers(redirect, ("HX-Request",))
            return redirect
        if response.status_code in (204, 286) or not response.get("Content-Type", "").startswith("text/html"):
            return response
        queued = list(messages.get_messages(request))
        if queued:
            response.write(render_to_string("partials/toasts.html", {"messages": queued, "oob": True}))
        return response
