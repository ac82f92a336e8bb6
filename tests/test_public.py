"""The init image the gateway fetches: a signed, expiring studio URL when STUDIO_PUBLIC_URL is set."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image

from studio.access import INIT_IMAGE_LINK_LIFETIME as LIFETIME
from studio.access import init_image_token
from studio.lifecycle.submit import image_reference
from studio.models import Render


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def with_image(owner) -> Render:
    render = Render.objects.create(
        user=owner,
        model="sora-2-pro",
        prompt="A harbour at dusk",
        params={"duration_seconds": 5, "resolution": "720p", "aspect_ratio": "16:9"},
        estimated_cost=Decimal("0.6938"),
        rate_per_second=Decimal("0.13875"),
    )
    render.init_image.save("init.png", ContentFile(png()), save=True)
    return render


@pytest.mark.django_db
def test_without_a_public_url_the_image_travels_as_a_data_uri(with_image, settings):
    settings.STUDIO_PUBLIC_URL = ""
    assert image_reference(with_image).startswith("data:image/png;base64,")


@pytest.mark.django_db
def test_with_a_public_url_the_gateway_gets_a_signed_link_that_serves_the_image(with_image, settings):
    settings.STUDIO_PUBLIC_URL = "https://studio.example.com"
    link = image_reference(with_image)
    assert link.startswith("https://studio.example.com/i/")
    response = Client().get(link.removeprefix("https://studio.example.com"))  # no login: the token is the key
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content if response.streaming else [response.content]) == png()


@pytest.mark.django_db
def test_a_tampered_or_stale_token_is_a_plain_404(with_image, monkeypatch):
    token = init_image_token(with_image)
    assert Client().get(f"/i/{token}x/").status_code == 404
    assert Client().get(f"/i/{with_image.pk}/").status_code == 404  # an id alone opens nothing
    later = __import__("time").time() + LIFETIME.total_seconds() + timedelta(minutes=1).total_seconds()
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    assert Client().get(f"/i/{token}/").status_code == 404
