"""The sweep: revive anything stuck, from the database alone (a lost task, a dead poller, a restart).

Besides the database it looks at the media files, at most once a minute and once every ten minutes: a finished
clip whose file went missing from the storage (the local disk or the object store, `studio.storage`) is fetched
again while its URL is valid (else marked lost, with an alert), and temporary files no running download owns (a
killed worker's, on this machine's disk) are removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from studio import queue, storage
from studio.lifecycle.download import CHECKED, PART, alert_file_lost, is_temporary, remove_temporary
from studio.lifecycle.transitions import advance
from studio.models import IN_FLIGHT, GatewayAlert, Lease, Render, State
from studio.money import ledger

log = logging.getLogger("studio.lifecycle")

FILE_CHECK_LEASE, FILE_CHECK_EVERY = "sweep-files", 60  # seconds
TEMP_SWEEP_LEASE, TEMP_SWEEP_EVERY = "sweep-temp", 600
FILE_CHECK_BATCH = 2000
# A clip whose URL expired this recently is still checked once more: a file lost just before is then marked lost.
RECENTLY_EXPIRED = timedelta(hours=1)


def sweep(*, files: bool = True) -> dict:
    """Revive anything stuck, from the database alone: lost submissions, lost downloads, a dead poller.

    `files`: also check finished clips' files and remove orphaned temporary files (each at most once a minute,
    under a lease). The poller's loop passes False: on an object store the check is a HEAD per clip, which would
    hold up every poll; the scheduled sweep (tasks.sweep, once a minute) does it."""
    now = timezone.now()
    limit = now - timedelta(seconds=settings.GATEWAY_TIMEOUT["read"] + 60)
    unknown = 0
    for render in Render.objects.filter(state=State.SUBMITTING, updated_at__lt=limit):
        message = (
            "The studio stopped while submitting; the gateway may have accepted it. It was not resubmitted."
        )
        if advance(
            render.pk, State.SUBMITTING, State.SUBMIT_UNKNOWN, error=message, error_code="submit_unknown"
        ):
            GatewayAlert.raise_alert(
                GatewayAlert.Kind.SUBMIT_UNKNOWN, f"Render {render.pk}: {message}", render=render
            )
            unknown += 1
    # A download task is queued the moment a render completes (or a slice ends); one that has not started in two
    # minutes was lost. One whose lease lapsed was running when its worker died: it resumes at once.
    stuck_downloads = Render.objects.filter(state=State.DOWNLOADING, next_attempt_at__isnull=True).filter(
        Q(lease_until__isnull=True, updated_at__lt=now - timedelta(minutes=2)) | Q(lease_until__lt=now)
    )
    revived = stuck_downloads.update(next_attempt_at=now)
    settled = ledger.settle_missing()
    files_report = check_files(now) if files and _due(FILE_CHECK_LEASE, FILE_CHECK_EVERY) else {}
    orphans = remove_orphans() if files and _due(TEMP_SWEEP_LEASE, TEMP_SWEEP_EVERY) else 0
    in_flight = Render.objects.filter(state__in=IN_FLIGHT).exists()
    if in_flight:
        queue.ensure_poller()
    return {
        "submit_unknown": unknown,
        "downloads_revived": revived,
        "settled": settled,
        "in_flight": in_flight,
        **files_report,
        "temporary_files_removed": orphans,
    }


def _due(name: str, seconds: float) -> bool:
    """True at most once every `seconds` across every process: a lease taken and never released."""
    return Lease.acquire(name, uuid.uuid4().hex, seconds)


def check_files(now=None) -> dict:
    """Finished clips whose file is missing or not the size downloaded: fetched again while the gateway's URL
    is valid (settlement is idempotent: the render settles once), else marked lost with an operator alert."""
    now = now or timezone.now()
    if storage.is_local() and not (Path(settings.MEDIA_ROOT) / "renders").is_dir():
        # The disk not mounted (or nothing was ever stored): judge no file.
        return {"files_refetched": 0, "files_lost": 0}
    rows = (
        Render.objects.filter(
            state=State.COMPLETED, file_lost_at__isnull=True, result_expires_at__gt=now - RECENTLY_EXPIRED
        )
        .exclude(video="")
        .order_by("-finished_at")
        .values_list("pk", "video", "video_bytes", "result_expires_at")[:FILE_CHECK_BATCH]
    )
    refetched = lost = 0
    for pk, video, size, expires in rows:
        try:
            actual = storage.stored_size(video)
        except storage.StorageUnavailable as error:  # the object store is down: judge no file now
            log.warning("The file check stopped: the storage did not answer (%s)", error)
            return {"files_refetched": refetched, "files_lost": lost}
        if actual is not None and (size is None or actual == size):
            continue
        if expires and expires > now:
            if advance(
                pk,
                State.COMPLETED,
                State.DOWNLOADING,
                where=Q(file_lost_at__isnull=True),
                lease_until=None,
                next_attempt_at=None,
                download_attempts=0,
                damaged_downloads=0,
                error="The clip's file went missing; downloading it again from the gateway.",
                error_code="refetch",
            ):
                queue.enqueue("download_render", pk)
                refetched += 1
            continue
        reason = "the gateway's link to it had expired"
        if Render.objects.filter(pk=pk, state=State.COMPLETED, file_lost_at__isnull=True).update(
            file_lost_at=now,
            error=f"The clip's file is gone and could not be downloaded again: {reason}.",
            error_code="file_lost",
        ):
            alert_file_lost(Render.objects.get(pk=pk), reason)
            lost += 1
    return {"files_refetched": refetched, "files_lost": lost}


def remove_orphans() -> int:
    """Remove temporary files no running download owns, in every render's folder: those of renders that are
    no longer downloading, and, of a download no attempt holds now, all but the partial clip it resumes."""
    root = Path(settings.MEDIA_ROOT) / "renders"
    found: dict[uuid.UUID, Path] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as folders:
        for entry in folders:
            with contextlib.suppress(ValueError):
                render_id = uuid.UUID(entry.name)
                if entry.is_dir(follow_symlinks=False) and _has_temporary(Path(entry.path)):
                    found[render_id] = Path(entry.path)
    if not found:
        return 0
    now = timezone.now()
    downloading = dict(
        Render.objects.filter(pk__in=list(found), state=State.DOWNLOADING).values_list("pk", "lease_until")
    )
    removed = 0
    for render_id, folder in found.items():
        if render_id not in downloading:
            removed += remove_temporary(folder)
            continue
        lease_until = downloading[render_id]
        if (
            lease_until is None or lease_until < now
        ):  # no attempt holds it: keep only what the next resumes or puts
            removed += remove_temporary(folder, keep=(PART, CHECKED))
    return removed


def _has_temporary(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(entry.is_file(follow_symlinks=False) and is_temporary(entry.name) for entry in entries)
