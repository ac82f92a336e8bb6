"""The frame PNG and a share link's video from either storage: the local disk or the S3-compatible object store
(`rclone serve s3`, the `s3` fixture in tests/conftest.py).

Decisions pinned here: the frame is read by ffmpeg where the clip is stored (on the object store, through a
short-lived pre-signed link, reading only the parts it needs); a share link's video goes through the same function
as the logged-in video URL, so on the object store it is a redirect to a pre-signed link while the link is live,
and a 410 from the moment it is revoked.
"""

from __future__ import annotations

import io
from decimal import Decimal

import httpx
import imageio_ffmpeg
import pytest
from conftest import HTMX, make_clip
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageChops, ImageStat

from studio import access, storage
from studio.models import Render, ShareLink
from tests.fixtures import client_for, make_render


@pytest.fixture(params=["local", "s3"])
def backend(request, media):
    """Where the studio keeps its files in this test: "local" (MEDIA_ROOT) or "s3" (a fresh bucket)."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    assert storage.is_local() == (request.param == "local")
    return request.param


@pytest.fixture
def clip(backend, owner, team, tmp_path) -> Render:
    """Olivia's finished two-second 160x90 clip at 24 fps in Acme, put in the storage as a download puts it."""
    render = make_render(
        owner, team=team, billed_cost=Decimal("0.5"), video_duration=2.0, finished_at=timezone.now()
    )
    made = make_clip(tmp_path / "made" / "clip.mp4", size="160x90", seconds=2, rate=24)
    storage.put_file(f"renders/{render.pk}/clip.mp4", made)
    Render.objects.filter(pk=render.pk).update(video=f"renders/{render.pk}/clip.mp4")
    render.refresh_from_db()
    return render


def test_the_frame_png_is_the_frame_at_t_from_either_storage(backend, clip, teammate, tmp_path):
    response = client_for(teammate).get(reverse("frame", args=[clip.pk]), {"t": "1.25"})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert image.size == (160, 90)
    local = make_clip(tmp_path / "again" / "clip.mp4", size="160x90", seconds=2, rate=24)  # the same pattern
    frames = imageio_ffmpeg.read_frames(str(local))
    next(frames)
    decoded = [Image.frombytes("RGB", (160, 90), bytes(f)) for f in frames]
    assert sum(ImageStat.Stat(ImageChops.difference(image, decoded[30])).mean) == 0  # 1.25 s x 24 = frame 30


def test_a_share_links_video_works_while_live_from_either_storage(backend, clip, owner, client):
    client_for(owner).post(reverse("share_create", args=[clip.pk]), **HTMX)
    link = ShareLink.objects.get()
    url = reverse("share_video", args=[access.share_token(link)])
    response = client.get(url)  # nobody logged in
    if backend == "local":
        assert response.status_code == 200
        body = b"".join(response.streaming_content)
    else:
        assert response.status_code == 302 and "X-Amz-Signature=" in response["Location"]
        body = httpx.get(response["Location"]).content
    with storage.storage().open(clip.video.name, "rb") as stored:
        assert body == stored.read()
    client_for(owner).post(reverse("share_revoke", args=[clip.pk, link.pk]), **HTMX)
    assert client.get(url).status_code == 410
