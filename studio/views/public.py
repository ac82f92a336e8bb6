"""The one URL served without a login: a render's init image, behind a signed, expiring token, for the gateway.

The gateway pages ask for the init image as a URL. With STUDIO_PUBLIC_URL set (the address the gateway can reach
the studio at), the studio sends such a URL instead of a data: URI. The token names one render and expires; it
reveals nothing else, and a wrong or stale token is a plain 404.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.views.decorators.http import require_safe

from studio.models import Render
from studio.ranged import ranged_file_response

SALT = "studio.init-image"
LIFETIME = timedelta(hours=24)
TYPES = {".png": "image/png", ".webp": "image/webp", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def init_image_token(render: Render) -> str:
    """A token that opens this render's init image for LIFETIME."""
    return signing.TimestampSigner(salt=SALT).sign(str(render.pk))


def init_image_path(render: Render) -> str:
    return reverse("init_image", args=[init_image_token(render)])


@require_safe
def init_image(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    """The init image a signed token names, while the token is fresh."""
    try:
        render_id = signing.TimestampSigner(salt=SALT).unsign(token, max_age=LIFETIME)
    except signing.BadSignature as error:  # also SignatureExpired
        raise Http404("No such image.") from error
    item = Render.objects.filter(pk=render_id).exclude(init_image="").first()
    if item is None:
        raise Http404("No such image.")
    file = Path(item.init_image.path)
    return ranged_file_response(request, file, TYPES.get(file.suffix.lower(), "application/octet-stream"))


urlpatterns = [path("i/<str:token>/", init_image, name="init_image")]
