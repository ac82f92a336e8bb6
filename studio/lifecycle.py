"""The render lifecycle: submit, poll, cancel and download, each step safe to run twice.

Every step follows the same rules (shared/RELIABILITY.md): take the render by id, claim it with a conditional
update, talk to the gateway outside any transaction, then write the outcome with another conditional update
that changes nothing if someone else got there first.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import F, Q
from django.utils import timezone

from studio import cadence, pricing
from studio.gateway.client import GatewayClient
from studio.gateway.types import (
    BadRequest,
    CredentialsRejected,
    DownloadError,
    GatewayError,
    NotCancellable,
    NotFound,
    PromptBlocked,
    RateLimited,
    RenderRequest,
    SubmitOutcomeUnknown,
    TaskState,
    TaskStatus,
    WalletEmpty,
)
from studio.media import MediaError, extract_poster, probe_video
from studio.models import AT_GATEWAY, IN_FLIGHT, GatewayAlert, Lease, Render, State, advance

log = logging.getLogger("studio.lifecycle")

POLLER_LEASE = "poller"
POLLER_LEASE_SECONDS = 10.0  # renewed every tick; a dead poller's lease lapses this fast
CREDENTIALS_PAUSE_SECONDS = 300
DOWNLOAD_LEASE = timedelta(minutes=3)
LOST_TASK_AFTER_404S = 5
POLL_ERROR_ALERT_AFTER = 20
# Settled for outcomes the gateway documents as not billed (4xx/5xx at submit, failed tasks, free cancels).
# Column values for advance(**fields): dict[str, Any], as they mix values and F() expressions.
NOTHING_BILLED: dict[str, Any] = {"billed_cost": Decimal("0"), "billed_credits": Decimal("0")}


def client_factory() -> GatewayClient:
    """A gateway client for the configured gateway. Tests replace it to inject transports."""
    return GatewayClient()


# --- submit -----------------------------------------------------------------------------------------------


def image_reference(render: Render) -> str | None:
    """How the init image reaches the gateway: a signed, expiring URL of the studio's when STUDIO_PUBLIC_URL says
    where the gateway can reach it (the pages ask for a URL), else a data: URI of the validated upload."""
    name = render.init_image.name
    if not name:  # a FieldFile is false exactly when its name is empty: no image
        return None
    if settings.STUDIO_PUBLIC_URL:
        from studio.views.public import init_image_path

        return settings.STUDIO_PUBLIC_URL + init_image_path(render)
    name = name.lower()
    mime = "image/png" if name.endswith(".png") else "image/webp" if name.endswith(".webp") else "image/jpeg"
    with render.init_image.open("rb") as handle:
        encoded = base64.b64encode(handle.read()).decode("ascii")
    return f"data:{mime};base64,{encoded}"


def _retry_delay(attempt: int, error: GatewayError) -> float:
    if isinstance(error, RateLimited):
        return max(error.retry_after, 1.0)
    return min(60.0, 2.0**attempt)


def submit_step(render_id, client: GatewayClient | None = None) -> str:
    """Send a pending render to the gateway, once. Returns what happened, for logs and tests."""
    now = timezone.now()
    paused_until = GatewayAlert.submissions_paused_until()
    if paused_until:
        advance(render_id, State.PENDING, next_attempt_at=paused_until)
        return "paused"
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    if not advance(
        render_id, State.PENDING, State.SUBMITTING, where=due, submit_attempts=F("submit_attempts") + 1
    ):
        return "skipped"
    render = Render.objects.get(pk=render_id)
    request = RenderRequest(render.model, render.prompt, render.params, image_reference(render))
    own_client = client is None
    client = client or client_factory()
    try:
        submission = client.submit(request)
    except GatewayError as error:
        return _submit_failed(render, error)
    finally:
        if own_client:
            client.close()
    GatewayAlert.resolve(GatewayAlert.Kind.CREDENTIALS)
    state = State.RUNNING if submission.status == TaskState.RUNNING else State.QUEUED
    accepted: dict[str, Any] = {
        "gateway_task_id": submission.task_id,
        "gateway_estimated_credits": submission.estimated_credits,
        "submitted_at": timezone.now(),
        "started_at": timezone.now() if state == State.RUNNING else None,
        "next_poll_at": timezone.now() + timedelta(seconds=_scaled(cadence.poll_delay(0, 1e9) or 2.0)),
        "next_attempt_at": None,  # a submit retry time left here would later look like a due download retry
        "error": "",
        "error_code": "",
    }
    if not advance(render_id, State.SUBMITTING, state, **accepted):
        _late_acceptance(render_id, state, accepted)
    log.info("Render %s submitted as gateway task %s", render_id, submission.task_id)
    from studio.money import ledger

    ledger.learn_rate(render, submission.estimated_credits)  # the submit answer shows the live rate too
    from studio.tasks import ensure_poller

    ensure_poller()
    return "submitted"


def _late_acceptance(render_id, state: str, accepted: dict) -> None:
    """The sweep gave up on this submission while the gateway was still answering: its answer settles it.

    Without this the task would run, be billed, and never be polled or downloaded.
    """
    if advance(
        render_id, State.SUBMIT_UNKNOWN, state, where=Q(gateway_task_id=""), finished_at=None, **accepted
    ):
        GatewayAlert.objects.filter(
            kind=GatewayAlert.Kind.SUBMIT_UNKNOWN, render_id=render_id, resolved_at__isnull=True
        ).update(resolved_at=timezone.now())
        log.warning(
            "Render %s: the gateway's late answer recorded task %s", render_id, accepted["gateway_task_id"]
        )
        return
    log.error(
        "Render %s was accepted as gateway task %s but is no longer submitting; record it by hand",
        render_id,
        accepted["gateway_task_id"],
    )


def _status(error: GatewayError) -> str:
    """ " (401)" for an answer from the gateway; nothing for a key the client refused to send at all."""
    return f" ({error.status})" if error.status else ""


def _submit_failed(render: Render, error: GatewayError) -> str:
    """Record why a submission did not go through; retry only what is documented as not billed."""
    rid = render.pk
    sent_back = isinstance(error, CredentialsRejected) or (
        error.retryable and render.submit_attempts < settings.STUDIO_SUBMIT_MAX_ATTEMPTS
    )
    if sent_back and advance(
        rid,
        State.SUBMITTING,
        State.CANCELLED,
        where=Q(cancel_requested_at__isnull=False),
        error="Cancelled before it reached the gateway: nothing was billed.",
        error_code="cancelled",
        **NOTHING_BILLED,
    ):
        return "cancelled"  # the user cancelled while this attempt was failing: do not send it again
    if isinstance(error, SubmitOutcomeUnknown):
        advance(rid, State.SUBMITTING, State.SUBMIT_UNKNOWN, error=error.message, error_code="submit_unknown")
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.SUBMIT_UNKNOWN,
            f"Render {rid}: {error.message} It was not resubmitted; check the gateway's task list.",
            render=render,
        )
        return "unknown"
    if isinstance(error, PromptBlocked):
        advance(
            rid,
            State.SUBMITTING,
            State.BLOCKED,
            error=error.message,
            error_code="prompt_blocked",
            **NOTHING_BILLED,
        )
        return "blocked"
    if isinstance(error, BadRequest):
        advance(
            rid,
            State.SUBMITTING,
            State.FAILED,
            error=error.message,
            error_code="bad_request",
            **NOTHING_BILLED,
        )
        return "rejected"
    if isinstance(error, CredentialsRejected):
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.CREDENTIALS,
            f"The gateway rejected the studio's API key{_status(error)}: {error.message} "
            "Submissions are paused; check BYTESPIKE_API_KEY.",
            pause_seconds=CREDENTIALS_PAUSE_SECONDS,
        )
        advance(
            rid,
            State.SUBMITTING,
            State.PENDING,
            submit_attempts=F("submit_attempts") - 1,
            next_attempt_at=timezone.now() + timedelta(seconds=CREDENTIALS_PAUSE_SECONDS),
            error="Waiting: the gateway rejected the studio's credentials; an operator has been alerted.",
            error_code="credentials",
        )
        return "paused"
    if isinstance(error, WalletEmpty):
        GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, f"The gateway wallet is empty: {error.message}")
        advance(
            rid,
            State.SUBMITTING,
            State.FAILED,
            error=error.message,
            error_code="wallet_empty",
            **NOTHING_BILLED,
        )
        return "wallet_empty"
    if error.retryable and render.submit_attempts < settings.STUDIO_SUBMIT_MAX_ATTEMPTS:
        delay = _retry_delay(render.submit_attempts, error)
        advance(
            rid,
            State.SUBMITTING,
            State.PENDING,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            error=f"Retrying: {error.message}",
            error_code="retrying",
        )
        from studio.tasks import ensure_poller

        ensure_poller()  # the poller re-sends due submissions
        return "retry"
    advance(
        rid,
        State.SUBMITTING,
        State.FAILED,
        error=f"{error.message} (gave up after {render.submit_attempts} attempts)"
        if error.retryable
        else error.message,
        error_code="gateway_error",
        **NOTHING_BILLED,
    )
    return "failed"


# --- poll -------------------------------------------------------------------------------------------------


def _scaled(seconds: float) -> float:
    return seconds * settings.STUDIO_POLL_SCALE


def _next_poll(render: Render) -> dict:
    """The next poll time, or the fields that mark the render stalled past the hard deadline."""
    elapsed = (timezone.now() - (render.submitted_at or render.created_at)).total_seconds()
    delay = cadence.poll_delay(elapsed / settings.STUDIO_POLL_SCALE, settings.STUDIO_STALL_AFTER_SECONDS)
    if delay is None:
        return {"stalled": True}
    return {"next_poll_at": timezone.now() + timedelta(seconds=_scaled(delay))}


def poll_step(render_id, client: GatewayClient) -> str:
    """Ask the gateway about one render at the gateway and record what it says."""
    render = Render.objects.filter(pk=render_id, state__in=AT_GATEWAY).first()
    if render is None:
        return "skipped"
    if render.cancel_requested_at and not render.is_terminal:
        outcome = cancel_step(render, client)
        if outcome != "poll":
            return outcome
    try:
        status = client.poll(render.model, render.gateway_task_id)
    except GatewayError as error:
        return _poll_failed(render, error)
    return apply_status(render, status)


def _poll_failed(render: Render, error: GatewayError) -> str:
    errors = render.poll_errors + 1
    if isinstance(error, NotFound) and errors >= LOST_TASK_AFTER_404S:
        message = f"The gateway no longer knows task {render.gateway_task_id} ({errors} polls answered 404)."
        if advance(
            render.pk, AT_GATEWAY, State.STALLED, error=message, error_code="lost", poll_errors=errors
        ):
            GatewayAlert.raise_alert(GatewayAlert.Kind.STALLED, message, render=render)
        return "lost"
    if isinstance(error, CredentialsRejected):
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.CREDENTIALS,
            f"The gateway rejected the studio's API key while polling{_status(error)}: {error.message}",
            pause_seconds=CREDENTIALS_PAUSE_SECONDS,
        )
    log.warning("Polling render %s failed (%s): %s", render.pk, type(error).__name__, error.message)
    if errors == POLL_ERROR_ALERT_AFTER:
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.STALLED,
            f"Render {render.pk}: {errors} polls in a row failed (last: {error.message}); still polling.",
            render=render,
        )
    return _schedule_next(render, poll_errors=errors, poll_count=F("poll_count") + 1)


def _span(seconds: float) -> str:
    """A duration as people read it: "2 seconds", "60 minutes"."""
    seconds = int(seconds)
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _schedule_next(render: Render, to_state: str | None = None, **fields) -> str:
    nxt = _next_poll(render)
    if nxt.pop("stalled", False):
        message = (
            f"No result after {_span(settings.STUDIO_STALL_AFTER_SECONDS)} at the gateway; "
            "an operator has been alerted. It may still be billed."
        )
        if advance(render.pk, AT_GATEWAY, State.STALLED, error=message, error_code="stalled", **fields):
            GatewayAlert.raise_alert(
                GatewayAlert.Kind.STALLED, f"Render {render.pk}: {message}", render=render
            )
        return "stalled"
    advance(render.pk, AT_GATEWAY, to_state, **nxt, **fields)
    return "scheduled"


def _billed(status_credits: Decimal | None) -> dict:
    if status_credits is None:
        return {}
    return {"billed_credits": status_credits, "billed_cost": pricing.credits_to_usd(status_credits)}


def apply_status(render: Render, status: TaskStatus) -> str:
    """Write what a poll said, by conditional update from the state the render was in."""
    counted: dict[str, Any] = {"poll_count": F("poll_count") + 1, "poll_errors": 0}
    if status.state == TaskState.COMPLETED:
        if not status.result_url:
            log.warning("Render %s completed without a result URL; polling again", render.pk)
            return _schedule_next(render, **counted)
        expires = status.result_expires_at or timezone.now() + timedelta(hours=24)
        moved = advance(
            render.pk,
            AT_GATEWAY,
            State.DOWNLOADING,
            progress=100,
            result_url=status.result_url,
            result_expires_at=expires,
            gateway_completed_at=status.completed_at or timezone.now(),
            started_at=render.started_at or timezone.now(),
            next_poll_at=None,
            next_attempt_at=None,
            **_billed(status.billed_credits),
            **counted,
        )
        if moved:
            from studio.tasks import enqueue

            enqueue("download_render", render.pk)
        return "completed"
    if status.state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED):
        target = {
            TaskState.FAILED: State.FAILED,
            TaskState.CANCELLED: State.CANCELLED,
            TaskState.EXPIRED: State.EXPIRED,
        }[status.state]
        billed = _billed(status.billed_credits)
        if target == State.FAILED and status.billed_credits is None:
            billed = dict(NOTHING_BILLED)  # "Failures don't bill"
        message = (
            status.error_message
            or {
                State.FAILED: "The gateway could not render this prompt.",
                State.CANCELLED: "Cancelled at the gateway.",
                State.EXPIRED: "The gateway expired this task.",
            }[target]
        )
        advance(
            render.pk, AT_GATEWAY, target, error=message, error_code=status.error_code, **billed, **counted
        )
        return str(target)
    fields: dict[str, Any] = dict(counted)
    if status.progress is not None:
        fields["progress"] = (
            max(status.progress, render.progress) if render.state == State.RUNNING else status.progress
        )
    if status.state == TaskState.RUNNING and render.state == State.QUEUED:
        # One write for the start and the next poll, so the poll is counted once.
        return _schedule_next(render, State.RUNNING, started_at=timezone.now(), **fields)
    if status.state == TaskState.QUEUED and render.state == State.RUNNING:
        log.warning("Render %s went backwards from running to queued at the gateway; ignoring", render.pk)
        fields.pop("progress", None)
    return _schedule_next(render, **fields)


# --- cancel -----------------------------------------------------------------------------------------------


def cancel_step(render: Render, client: GatewayClient) -> str:
    """Ask the gateway to cancel a render the user asked to stop; 'poll' when the gateway says it ended."""
    try:
        result = client.cancel(render.model, render.gateway_task_id)
    except NotCancellable:
        # It finished (or failed) before the cancel reached it: the poll that follows records the outcome.
        advance(render.pk, AT_GATEWAY, error="It finished before the cancel reached the gateway.")
        return "poll"
    except GatewayError as error:
        log.warning("Cancelling render %s failed: %s", render.pk, error.message)
        return _schedule_next(render)
    if result.state != TaskState.CANCELLED:
        return "poll"
    billed = _billed(result.billed_credits if result.billed_credits is not None else Decimal("0"))
    if advance(render.pk, AT_GATEWAY, State.CANCELLED, error="", error_code="cancelled", **billed):
        return "cancelled"
    return "skipped"


# --- download ---------------------------------------------------------------------------------------------


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
    client = client or client_factory()
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


# --- the poller: one loop that keeps every in-flight render on cadence --------------------------------------


def _in_thread(step: Callable, *args) -> str:
    """Run a step in a pool thread with its own database connection, closed afterwards."""
    try:
        return step(*args)
    except Exception:
        log.exception("%s failed for %s", step.__name__, args[0])
        return "error"
    finally:
        connections.close_all()


def due_work(now) -> tuple[list, list, list]:
    """Ids of renders due for a poll, a (re)submission, and a download retry."""
    polls = list(
        Render.objects.filter(state__in=AT_GATEWAY, next_poll_at__lte=now)
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:500]
    )
    submits = list(
        Render.objects.filter(state=State.PENDING)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, created_at__lte=now - timedelta(seconds=10))
        )
        .values_list("pk", flat=True)[:100]
    )
    downloads = list(
        Render.objects.filter(state=State.DOWNLOADING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("pk", flat=True)[:100]
    )
    return polls, submits, downloads


def poller_has_work() -> bool:
    """Whether anything needs the poller: tasks at the gateway, submissions to (re)send, downloads to retry."""
    return Render.objects.filter(
        Q(state__in=[State.PENDING, State.SUBMITTING, *AT_GATEWAY])
        | Q(state=State.DOWNLOADING, next_attempt_at__isnull=False)
    ).exists()


def sweep() -> dict:
    """Revive anything stuck, from the database alone: lost submissions, lost downloads, a dead poller."""
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
    # A download task is queued the moment a render completes; one that has not started in two minutes was lost.
    stuck_downloads = Render.objects.filter(
        state=State.DOWNLOADING, next_attempt_at__isnull=True, updated_at__lt=now - timedelta(minutes=2)
    ).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    revived = stuck_downloads.update(next_attempt_at=now)
    from studio.money import ledger

    settled = ledger.settle_missing()
    in_flight = Render.objects.filter(state__in=IN_FLIGHT).exists()
    if in_flight:
        from studio.tasks import ensure_poller

        ensure_poller()
    return {
        "submit_unknown": unknown,
        "downloads_revived": revived,
        "settled": settled,
        "in_flight": in_flight,
    }


def run_poller(max_seconds: float | None = None, tick: float = 0.2, wait_for_lease: float = 0.0) -> dict:
    """Poll every due render concurrently until nothing is in flight or the run's time is up.

    One poller at a time holds the lease; a second one returns at once. When its time is up with work left it
    hands over to a fresh task, so no single task outlives the cluster's timeout. The once-a-minute sweep
    starts a new one if this one dies.
    """
    holder = uuid.uuid4().hex
    lease_seconds = POLLER_LEASE_SECONDS
    give_up = time.monotonic() + wait_for_lease
    while not Lease.acquire(POLLER_LEASE, holder, lease_seconds):
        if time.monotonic() >= give_up:
            return {"ran": False}
        time.sleep(0.5)
    max_seconds = settings.STUDIO_POLLER_RUN_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + max_seconds
    running: dict = {}
    counts = {"polls": 0, "submits": 0, "downloads": 0}
    next_sweep = 0.0
    client = client_factory()
    work_left = True
    try:
        with ThreadPoolExecutor(settings.STUDIO_POLLER_THREADS, thread_name_prefix="poller") as pool:
            while time.monotonic() < deadline:
                if not Lease.acquire(POLLER_LEASE, holder, lease_seconds):
                    log.warning("The poller lost its lease; stopping")
                    break
                running = {rid: fut for rid, fut in running.items() if not fut.done()}
                now = timezone.now()
                polls, submits, downloads = due_work(now)
                _dispatch(pool, running, polls, poll_step, client, counts, "polls")
                _dispatch(pool, running, submits, submit_step, client, counts, "submits")
                for rid in downloads:
                    if Render.objects.filter(pk=rid, next_attempt_at__lte=now).update(
                        next_attempt_at=now + timedelta(seconds=60)
                    ):
                        from studio.tasks import enqueue

                        enqueue("download_render", rid)
                        counts["downloads"] += 1
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 5
                    sweep_result = sweep()
                    work_left = sweep_result.get("in_flight", True)
                if not running and not poller_has_work():
                    work_left = False
                    break
                time.sleep(tick)
            else:
                work_left = poller_has_work()
            for future in list(running.values()):
                future.result()
    finally:
        client.close()
        Lease.release(POLLER_LEASE, holder)
    if work_left:
        from studio.tasks import enqueue

        enqueue("run_poller")
    return {"ran": True, **counts, "work_left": work_left}


def _dispatch(pool, running: dict, ids: list, step, client, counts: dict, key: str) -> None:
    for rid in ids:
        if rid in running:
            continue
        future: Future = pool.submit(_in_thread, step, rid, client)
        running[rid] = future
        counts[key] += 1


def closing(func: Callable) -> Callable:
    """Close stale database connections around a task, as Django does around a request."""

    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
