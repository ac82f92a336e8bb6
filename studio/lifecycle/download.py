"""Download: fetch a finished render's clip the moment the gateway has it, before its URL expires.

The clip is streamed to a temporary file in the render's folder, size-capped, checked to be a playable MP4, then
renamed into place with its poster frame: a partial file is never served. Failures are retried with back-off
until the URL's expiry.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from studio.gateway.client import GatewayClient
from studio.gateway.types import DownloadError, GatewayError, TaskState
from studio.lifecycle import transitions
from studio.lifecycle.transitions import advance
from studio.media import MediaError, extract_poster, probe_video
from studio.models import Render, State

log = logging.getLogger("studio.lifecycle")

DOWNLOAD_LEASE = timedelta(minutes=3)


def render_dir(render_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "renders" / str(render_id)


def _download_retry(render: Render, message: str) -> str:
    now = timezone.now()
    if render.result_expires_at and now >= render.result_expires_at:
        return _expire(render, message)
    delay = min(300, 2 ** min(render.download_attempts, 8))
    advance(
        render.pk,
        State.DOWNLOADING,
        lease_until=None,
        next_attempt_at=now + timedelta(seconds=delay),
        error=f"Download will be retried: {message}",
    )
    return "retry"


def _expire(render: Render, message: str) -> str:
    advance(
        render.pk,
        State.DOWNLOADING,
        State.EXPIRED,
        error=f"The clip's URL expired before it could be downloaded ({message}). It was billed.",
        error_code="result_expired",
    )
    return "expired"


def download_step(render_id, client: GatewayClient | None = None) -> str:
    """Fetch a finished render's clip into media storage, extract its poster and record its facts."""
    now = timezone.now()
    claimed = Render.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=render_id, state=State.DOWNLOADING
    ).update(lease_until=now + DOWNLOAD_LEASE, download_attempts=F("download_attempts") + 1, updated_at=now)
    if not claimed:
        return "skipped"
    render = Render.objects.get(pk=render_id)
    if render.result_expires_at and now >= render.result_expires_at:
        return _expire(render, "past its expiry")
    folder = render_dir(render.pk)
    own_client = client is None
    client = client or transitions.client_factory()
    try:
        downloaded = client.download(render.result_url, folder, max_bytes=settings.STUDIO_MAX_VIDEO_BYTES)
    except DownloadError as error:
        if error.expired and (not render.result_expires_at or now >= render.result_expires_at):
            return _expire(render, error.message)
        if error.expired:
            return _refresh_result(render, client, error.message)
        if error.permanent:
            advance(
                render.pk,
                State.DOWNLOADING,
                State.FAILED,
                error=f"{error.message} It was billed; the clip could not be downloaded.",
                error_code="download",
            )
            return "failed"
        return _download_retry(render, error.message)
    except OSError as error:  # disk full, permissions: keep the render, try again later
        log.error("Storing the clip of render %s failed: %s", render.pk, error)
        return _download_retry(render, f"storage error ({error.strerror or error})")
    finally:
        if own_client:
            client.close()
    return _store_clip(render, downloaded.path, downloaded.size)


def _refresh_result(render: Render, client: GatewayClient, message: str) -> str:
    """The result URL was refused before its stated expiry: ask the gateway for the task's URL as it is now."""
    try:
        status = client.poll(render.model, render.gateway_task_id)
    except GatewayError as error:
        return _download_retry(render, f"{message} Asking the gateway again failed: {error.message}")
    expires = status.result_expires_at
    if (
        status.state != TaskState.COMPLETED
        or not status.result_url
        or (expires and expires <= timezone.now())
    ):
        return _expire(render, message)
    advance(render.pk, State.DOWNLOADING, result_url=status.result_url, result_expires_at=expires)
    return _download_retry(render, f"{message} The gateway issued a new URL.")


def _store_clip(render: Render, temp: Path, size: int) -> str:
    folder = temp.parent
    poster_temp = folder / f".poster-{uuid.uuid4().hex}.jpg"
    try:
        info = probe_video(temp)
        extract_poster(temp, poster_temp, at_seconds=min(1.0, info.duration / 2))
    except (MediaError, OSError) as error:
        temp.unlink(missing_ok=True)
        poster_temp.unlink(missing_ok=True)
        return _download_retry(render, f"the file is not a playable video ({error})")
    os.replace(temp, folder / "clip.mp4")
    os.replace(poster_temp, folder / "poster.jpg")
    relative = f"renders/{render.pk}"
    moved = advance(
        render.pk,
        State.DOWNLOADING,
        State.COMPLETED,
        video=f"{relative}/clip.mp4",
        poster=f"{relative}/poster.jpg",
        video_bytes=size,
        video_duration=info.duration,
        video_width=info.width,
        video_height=info.height,
        error="",
        error_code="",
    )
    return "completed" if moved else "skipped"
