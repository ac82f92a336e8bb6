"""Download: fetch a finished render's clip the moment the gateway has it, before its URL expires.

Every attempt appends to one partial file per render (`renders/<id>/clip.mp4.part`), resuming with an HTTP
Range request from the bytes already on disk. An attempt holds the render's lease, renewed while bytes flow, and
lasts one slice (STUDIO_DOWNLOAD_SLICE_SECONDS) at most: then it releases the lease and queues the next one, so
no task outlives the cluster's timeout however slow the link. Only a stall (no byte for
STUDIO_DOWNLOAD_STALL_SECONDS) or an error ends an attempt early; it is retried with back-off until the URL's
expiry. A whole file must be an MP4 that decodes from first frame to last before it is put in place with its
poster (renamed on the local disk, uploaded to an object store: `studio.storage`): a partial or damaged file is
never served. The partial file is always on the worker's own disk (under MEDIA_ROOT). A damaged file is downloaded
again a few times (STUDIO_DAMAGED_DOWNLOADS), then the render fails: it was billed, and an operator is alerted.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from studio import metrics, queue, storage
from studio.gateway.client import Fetched, GatewayClient
from studio.gateway.types import DownloadError, GatewayError, TaskState
from studio.lifecycle import transitions
from studio.lifecycle.transitions import advance
from studio.media import MediaError, MediaTimeout, decode_check, probe_video
from studio.models import GatewayAlert, Render, State

log = logging.getLogger("studio.lifecycle")

CLIP = "clip.mp4"
POSTER = "poster.jpg"
PART = f"{CLIP}.part"  # the one partial file of a render: every attempt resumes it
POSTER_PART = f"{POSTER}.part"
# A whole clip that passed the decode check but could not be put in the storage (an object store down): the next
# attempt puts it again without the gateway, even past its URL's expiry, so a paid clip is never left behind.
CHECKED = f"{CLIP}.checked.part"
# The lease outlasts a stall by this margin, renewed every RENEW_EVERY_SECONDS while bytes flow: a killed worker's
# download is taken up again seconds after its last byte.
LEASE_MARGIN_SECONDS = 10
RENEW_EVERY_SECONDS = 2.0
CHECK_LEASE_SECONDS = 120  # the lease taken for checking the whole clip (ffmpeg runs without renewing it)
DAMAGED_RETRY_SECONDS = (
    5  # times the damaged downloads so far: a damaged file is fetched again within minutes
)


def render_dir(render_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "renders" / str(render_id)


def is_temporary(name: str) -> bool:
    """A file a download writes before the clip is in place: `clip.mp4.part`, a poster in the making, and the
    `.download-*.part` files of the older naming scheme (every temporary name starts with "." or ends in .part)."""
    return name.startswith(".") or name.endswith(".part")


def remove_temporary(folder: Path, *, keep: tuple[str, ...] = ()) -> int:
    """Delete the temporary files in a render's folder (but `keep`); how many went."""
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and is_temporary(entry.name) and entry.name not in keep:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


class LeaseLost(Exception):
    """Another attempt holds the render now: stop without touching its row or its files."""


class _Hold:
    """This attempt's lease on the render. Its `lease_until` value is the token every later write checks, so an
    attempt whose lease lapsed and was taken over changes nothing."""

    def __init__(self, render_id, until) -> None:
        self.render_id = render_id
        self.until = until
        self.received = False  # bytes arrived during this attempt
        self._renewed = time.monotonic()

    @staticmethod
    def length() -> timedelta:
        return timedelta(seconds=settings.STUDIO_DOWNLOAD_STALL_SECONDS + LEASE_MARGIN_SECONDS)

    @property
    def mine(self) -> Q:
        return Q(lease_until=self.until)

    def on_bytes(self, size: int) -> None:
        self.received = True
        if time.monotonic() - self._renewed >= RENEW_EVERY_SECONDS:
            self.renew()

    def renew(self, seconds: float | None = None) -> None:
        """Push the lease on (by `seconds`, else the usual length); raise LeaseLost when the render is no
        longer this attempt's."""
        now = timezone.now()
        until = now + (timedelta(seconds=seconds) if seconds is not None else self.length())
        try:
            renewed = Render.objects.filter(
                pk=self.render_id, state=State.DOWNLOADING, lease_until=self.until
            ).update(lease_until=until, updated_at=now)
        except (
            DatabaseError
        ) as error:  # a busy database: the lease still has a minute to run, try again later
            log.warning("Renewing the download lease of render %s failed: %s", self.render_id, error)
            return
        if not renewed:
            raise LeaseLost
        self.until = until
        self._renewed = time.monotonic()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on the render's folder for this process (False when another attempt holds it).

    The lease already makes attempts take turns; this keeps two writers off one partial file even if a lease
    lapsed under a live attempt. The kernel drops the lock when the process dies.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def download_step(render_id, client: GatewayClient | None = None) -> str:
    """Fetch (or go on fetching) a finished render's clip, check it decodes, and put it in place."""
    if not Render.objects.filter(pk=render_id, state=State.DOWNLOADING).exists():
        return "skipped"
    folder = render_dir(render_id)
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder) as locked:
        if not locked:
            return "skipped"  # another attempt is writing this clip right now; it carries on
        return metrics.download_finished(_attempt(render_id, folder, client))


def _attempt(render_id, folder: Path, client: GatewayClient | None) -> str:
    now = timezone.now()
    until = now + _Hold.length()
    claimed = Render.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=render_id, state=State.DOWNLOADING
    ).update(lease_until=until, download_attempts=F("download_attempts") + 1, updated_at=now)
    if not claimed:
        return "skipped"
    hold = _Hold(render_id, until)
    render = Render.objects.get(pk=render_id)
    checked = folder / CHECKED
    if checked.exists():
        size = checked.stat().st_size
        return _store_clip(render, hold, Fetched(checked, size, True, "video/mp4", size, False))
    if render.result_expires_at and now >= render.result_expires_at:
        return _expire(render, hold, "past its expiry")
    own_client = client is None
    client = client or transitions.client_factory()
    try:
        fetched = client.fetch(
            render.result_url,
            folder / PART,
            max_bytes=settings.STUDIO_MAX_VIDEO_BYTES,
            stall_seconds=settings.STUDIO_DOWNLOAD_STALL_SECONDS,
            deadline=time.monotonic() + settings.STUDIO_DOWNLOAD_SLICE_SECONDS,
            on_bytes=hold.on_bytes,
        )
    except LeaseLost:
        return "skipped"
    except DownloadError as error:
        if error.expired and (not render.result_expires_at or now >= render.result_expires_at):
            return _expire(render, hold, error.message)
        if error.expired:
            return _refresh_result(render, hold, client, error.message)
        if error.permanent:
            return _give_up(render, hold, f"{error.message} It was billed; the clip could not be downloaded.")
        return _download_retry(render, hold, error.message)
    except OSError as error:  # disk full, permissions: keep the render, try again later
        log.error("Storing the clip of render %s failed: %s", render.pk, error)
        return _download_retry(render, hold, f"storage error ({error.strerror or error})")
    finally:
        if own_client:
            client.close()
    if fetched.restarted:
        log.info("Render %s: the result server ignored Range; its download started over", render.pk)
    if not fetched.complete:
        return _next_slice(render, hold)
    return _store_clip(render, hold, fetched)


def _next_slice(render: Render, hold: _Hold) -> str:
    """The slice is over with bytes still coming: keep the partial file and queue the next attempt."""
    if advance(
        render.pk,
        State.DOWNLOADING,
        where=hold.mine,
        lease_until=None,
        next_attempt_at=None,  # queued now; if that task is lost, the sweep revives the download
        download_attempts=0,  # it is making progress: a later failure starts the back-off afresh
        error="",
    ):
        queue.enqueue("download_render", render.pk)
    return "continued"


def _download_retry(
    render: Render, hold: _Hold, message: str, *, delay: float | None = None, checked: bool = False
) -> str:
    """Queue the next attempt with back-off; past the URL's expiry the render expires, unless the whole clip is
    `checked` on this disk (only the storage failed): that one is put again however late."""
    now = timezone.now()
    if not checked and render.result_expires_at and now >= render.result_expires_at:
        return _expire(render, hold, message)
    fields: dict = {}
    if delay is None and hold.received:
        delay, fields["download_attempts"] = 1, 0  # bytes flowed until it broke: resume soon
    if delay is None:
        delay = min(300, 2 ** min(render.download_attempts, 8))
    advance(
        render.pk,
        State.DOWNLOADING,
        where=hold.mine,
        lease_until=None,
        next_attempt_at=now + timedelta(seconds=delay),
        error=f"Download will be retried: {message}",
        **fields,
    )
    return "retry"


def _expire(render: Render, hold: _Hold, message: str) -> str:
    remove_temporary(render_dir(render.pk))
    if render.video:  # a finished clip whose file went missing: it stays finished, its file lost
        return _file_lost(render, hold, f"the gateway's link expired ({message})")
    advance(
        render.pk,
        State.DOWNLOADING,
        State.EXPIRED,
        where=hold.mine,
        error=f"The clip's URL expired before it could be downloaded ({message}). It was billed.",
        error_code="result_expired",
    )
    return "expired"


def _give_up(render: Render, hold: _Hold, message: str) -> str:
    remove_temporary(render_dir(render.pk))
    if render.video:
        return _file_lost(render, hold, message)
    advance(render.pk, State.DOWNLOADING, State.FAILED, where=hold.mine, error=message, error_code="download")
    return "failed"


def _file_lost(render: Render, hold: _Hold, reason: str, **fields) -> str:
    """A finished render whose file went missing could not be fetched again: it keeps its state and its bill."""
    now = timezone.now()
    if advance(
        render.pk,
        State.DOWNLOADING,
        State.COMPLETED,
        where=hold.mine,
        file_lost_at=now,
        finished_at=render.finished_at or now,
        error=f"The clip's file is gone and could not be downloaded again: {reason}",
        error_code="file_lost",
        **fields,
    ):
        alert_file_lost(render, reason)
    return "file_lost"


def alert_file_lost(render: Render, reason: str) -> None:
    GatewayAlert.raise_alert(
        GatewayAlert.Kind.FILE_LOST,
        f"Render {render.pk}: the finished clip's file is gone and could not be fetched again ({reason}). "
        "It was billed.",
        render=render,
    )


def _refresh_result(render: Render, hold: _Hold, client: GatewayClient, message: str) -> str:
    """The result URL was refused before its stated expiry: ask the gateway for the task's URL as it is now."""
    try:
        status = client.poll(render.model, render.gateway_task_id)
    except GatewayError as error:
        return _download_retry(render, hold, f"{message} Asking the gateway again failed: {error.message}")
    expires = status.result_expires_at
    if (
        status.state != TaskState.COMPLETED
        or not status.result_url
        or (expires and expires <= timezone.now())
    ):
        return _expire(render, hold, message)
    advance(
        render.pk, State.DOWNLOADING, where=hold.mine, result_url=status.result_url, result_expires_at=expires
    )
    return _download_retry(render, hold, f"{message} The gateway issued a new URL.")


def _store_clip(render: Render, hold: _Hold, fetched: Fetched) -> str:
    """Check the whole file decodes, take its poster frame, and put both in the storage."""
    part = fetched.path
    folder = part.parent
    poster_part = folder / POSTER_PART
    try:
        hold.renew(CHECK_LEASE_SECONDS)  # the check takes seconds on a long clip and renews nothing meanwhile
        info = probe_video(part)
        decode_check(part, poster=poster_part, poster_at=min(1.0, info.duration / 2))  # one pass for both
    except LeaseLost:
        return "skipped"
    except MediaTimeout as error:  # too busy to tell: the whole file stays, the next attempt checks it again
        poster_part.unlink(missing_ok=True)
        return _download_retry(render, hold, f"checking the clip took too long ({error})")
    except MediaError as error:
        part.unlink(missing_ok=True)
        poster_part.unlink(missing_ok=True)
        return _damaged(render, hold, str(error))
    except OSError as error:
        poster_part.unlink(missing_ok=True)
        return _download_retry(render, hold, f"storage error ({error.strerror or error})")
    relative = f"renders/{render.pk}"
    try:
        if not storage.is_local():
            hold.renew(CHECK_LEASE_SECONDS)  # an upload of a long clip renews nothing meanwhile either
        # The poster first: a clip that fails to store keeps its checked part for the next attempt.
        storage.put_file(f"{relative}/{POSTER}", poster_part)
        storage.put_file(f"{relative}/{CLIP}", part)
    except LeaseLost:
        return "skipped"
    except (OSError, storage.StorageUnavailable) as error:
        log.error("Storing the clip of render %s failed: %s", render.pk, error)
        part.replace(folder / CHECKED)  # whole and checked: the next attempt only puts it (see CHECKED)
        detail = error.strerror if isinstance(error, OSError) and error.strerror else error
        return _download_retry(render, hold, f"storage error ({detail})", checked=True)
    moved = advance(
        render.pk,
        State.DOWNLOADING,
        State.COMPLETED,
        where=hold.mine,
        video=f"{relative}/{CLIP}",
        poster=f"{relative}/{POSTER}",
        video_bytes=fetched.size,
        video_duration=info.duration,
        video_width=info.width,
        video_height=info.height,
        finished_at=render.finished_at or timezone.now(),  # a clip fetched again keeps its first finish
        error="",
        error_code="",
    )
    remove_temporary(folder)  # what killed attempts left behind (a poster in the making, older names)
    if not storage.is_local():
        with contextlib.suppress(OSError):
            folder.rmdir()  # the worker's scratch folder, empty now: the files are in the object store
    return "completed" if moved else "skipped"


def _damaged(render: Render, hold: _Hold, detail: str) -> str:
    """The whole file arrived but does not decode: fetch it again a few times, then give up (it was billed)."""
    count = render.damaged_downloads + 1
    log.warning("Render %s: download %s of the clip is damaged: %s", render.pk, count, detail)
    if count < settings.STUDIO_DAMAGED_DOWNLOADS:
        advance(
            render.pk,
            State.DOWNLOADING,
            where=hold.mine,
            damaged_downloads=count,
            lease_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=DAMAGED_RETRY_SECONDS * count),
            error=f"Download will be retried: the file was damaged ({detail}).",
        )
        return "retry"
    remove_temporary(render_dir(render.pk))
    if render.video:
        return _file_lost(
            render, hold, f"the gateway delivered a damaged file {count} times", damaged_downloads=count
        )
    if advance(
        render.pk,
        State.DOWNLOADING,
        State.FAILED,
        where=hold.mine,
        damaged_downloads=count,
        error=f"The clip could not be used: the gateway delivered a damaged file; it was billed. ({detail})",
        error_code="damaged",
    ):
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.DAMAGED,
            f"Render {render.pk}: {count} downloads of the clip failed the full decode (last: {detail}). "
            "The gateway billed it: ask the gateway for a credit.",
            render=render,
        )
    return "damaged"
