"""The one URL served without a login: a render's init image, behind a signed, expiring token, for the gateway.

The gateway pages ask for the init image as a URL. With STUDIO_PUBLIC_URL set (the address the gateway can reach
the studio at), the studio sends such a URL instead of a data: URI. The token names one render and expires; it
reveals nothing else, and a wrong or stale token is a plain 404.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.http import require_safe

from studio import access
from studio.ranged import stored_file_response

TYPES = {".png": "image/png", ".webp": "image/webp", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@require_safe
def init_image(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    """The init image a signed token names, while the token is fresh."""
    item = access.get_render_for_init_image_token(token)
    name = item.init_image.name or ""
    # Streamed even from an object store: the gateway may not follow a redirect or reach the store.
    kind = TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    return stored_file_response(request, name, kind, redirect=False)


urlpatterns = [path("i/<str:token>/", init_image, name="init_image")]
