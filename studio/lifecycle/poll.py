"""Poll: ask the gateway about a render it holds, keep it on cadence, and send a cancel the user asked for.

Poll faults (5xx, timeouts, malformed answers) count an error and keep the cadence; a task the gateway keeps
answering 404 for is lost; past the hard deadline a render is `stalled` with an operator alert.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from studio import cadence, queue
from studio.formatting import duration_in_words
from studio.gateway.client import GatewayClient
from studio.gateway.types import (
    CredentialsRejected,
    GatewayError,
    NotFound,
    TaskState,
    TaskStatus,
)
from studio.lifecycle import cancel
from studio.lifecycle.submit import CREDENTIALS_PAUSE_SECONDS
from studio.lifecycle.transitions import NOTHING_BILLED, advance, billed_fields, scaled, status_note
from studio.models import AT_GATEWAY, GatewayAlert, Render, State

log = logging.getLogger("studio.lifecycle")

LOST_TASK_AFTER_404S = 5
POLL_ERROR_ALERT_AFTER = 20


def _next_poll(render: Render) -> dict:
    """The next poll time, or the fields that mark the render stalled past the hard deadline."""
    elapsed = (timezone.now() - (render.submitted_at or render.created_at)).total_seconds()
    delay = cadence.poll_delay(elapsed / settings.STUDIO_POLL_SCALE, settings.STUDIO_STALL_AFTER_SECONDS)
    if delay is None:
        return {"stalled": True}
    return {"next_poll_at": timezone.now() + timedelta(seconds=scaled(delay))}


def poll_step(render_id, client: GatewayClient) -> str:
    """Ask the gateway about one render at the gateway and record what it says."""
    render = Render.objects.filter(pk=render_id, state__in=AT_GATEWAY).first()
    if render is None:
        return "skipped"
    if cancel.wants_cancel(render):
        # A cancel never holds up the poll: whatever the gateway says to it, the render is polled as usual.
        outcome = cancel.cancel_step(render, client)
        if outcome != "poll":
            return outcome
        render = Render.objects.filter(pk=render_id, state__in=AT_GATEWAY).first()
        if render is None:
            return "skipped"
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
            f"The gateway rejected the studio's API key while polling{status_note(error)}: {error.message}",
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


def _schedule_next(render: Render, to_state: str | None = None, **fields) -> str:
    nxt = _next_poll(render)
    if nxt.pop("stalled", False):
        message = (
            f"No result after {duration_in_words(settings.STUDIO_STALL_AFTER_SECONDS)} at the gateway; "
            "an operator has been alerted. It may still be billed."
        )
        if advance(render.pk, AT_GATEWAY, State.STALLED, error=message, error_code="stalled", **fields):
            GatewayAlert.raise_alert(
                GatewayAlert.Kind.STALLED, f"Render {render.pk}: {message}", render=render
            )
        return "stalled"
    advance(render.pk, AT_GATEWAY, to_state, **nxt, **fields)
    return "scheduled"


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
            **billed_fields(status.billed_credits),
            **counted,
        )
        if moved:
            queue.enqueue("download_render", render.pk)
        return "completed"
    if status.state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED):
        target = {
            TaskState.FAILED: State.FAILED,
            TaskState.CANCELLED: State.CANCELLED,
            TaskState.EXPIRED: State.EXPIRED,
        }[status.state]
        billed = billed_fields(status.billed_credits)
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
