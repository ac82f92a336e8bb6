"""Submit: send a pending render to the gateway once, and decide what a refusal means.

Intent is recorded (`submitting`, the attempt counted) before the HTTP call and the task id is saved the moment
it arrives. Only what the gateway documents as not billed is retried; an answer lost after sending becomes
`submit_unknown`, never a blind resubmission.
"""

from __future__ import annotations

import base64
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from studio import access, cadence, queue
from studio.gateway.client import GatewayClient
from studio.gateway.types import (
    BadRequest,
    CredentialsRejected,
    GatewayError,
    PromptBlocked,
    RateLimited,
    RenderRequest,
    SubmitOutcomeUnknown,
    TaskState,
    WalletEmpty,
)
from studio.lifecycle import transitions
from studio.lifecycle.transitions import NOTHING_BILLED, advance, scaled, status_note
from studio.models import GatewayAlert, Render, State
from studio.money import ledger

log = logging.getLogger("studio.lifecycle")

CREDENTIALS_PAUSE_SECONDS = 300


def image_reference(render: Render) -> str | None:
    """How the init image reaches the gateway: a signed, expiring URL of the studio's when STUDIO_PUBLIC_URL says
    where the gateway can reach it (the pages ask for a URL), else a data: URI of the validated upload."""
    name = render.init_image.name
    if not name:  # a FieldFile is false exactly when its name is empty: no image
        return None
    if settings.STUDIO_PUBLIC_URL:
        return settings.STUDIO_PUBLIC_URL + access.init_image_path(render)
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
    render = Render.objects.filter(due, pk=render_id, state=State.PENDING).first()
    if render is None:
        return "skipped"
    # Everything that can be prepared is prepared before the row says `submitting`: the window in which a crash
    # leaves the outcome unknown is the HTTP call itself.
    try:
        request = RenderRequest(render.model, render.prompt, render.params, image_reference(render))
    except OSError as error:
        advance(
            render_id,
            State.PENDING,
            State.FAILED,
            error=f"The init image could not be read ({error.strerror or error}); nothing was sent or billed.",
            error_code="init_image",
            **NOTHING_BILLED,
        )
        return "failed"
    own_client = client is None
    client = client or transitions.client_factory()
    if not advance(
        render_id, State.PENDING, State.SUBMITTING, where=due, submit_attempts=F("submit_attempts") + 1
    ):
        if own_client:
            client.close()
        return "skipped"
    render.submit_attempts += 1
    try:
        submission = client.submit(request)
    except GatewayError as error:
        return _submit_failed(render, error)
    finally:
        if own_client:
            client.close()
    if GatewayAlert.objects.filter(kind=GatewayAlert.Kind.CREDENTIALS, resolved_at__isnull=True).exists():
        resolve_credentials_alerts()  # the key works again: send whatever waited on it now
    state = State.RUNNING if submission.status == TaskState.RUNNING else State.QUEUED
    accepted: dict[str, Any] = {
        "gateway_task_id": submission.task_id,
        "gateway_estimated_credits": submission.estimated_credits,
        "submitted_at": timezone.now(),
        "started_at": timezone.now() if state == State.RUNNING else None,
        "next_poll_at": timezone.now() + timedelta(seconds=scaled(cadence.poll_delay(0, 1e9) or 2.0)),
        "next_attempt_at": None,  # a submit retry time left here would later look like a due download retry
        "error": "",
        "error_code": "",
    }
    if not advance(render_id, State.SUBMITTING, state, **accepted):
        _late_acceptance(render_id, state, accepted)
    log.info("Render %s submitted as gateway task %s", render_id, submission.task_id)
    ledger.learn_rate(render, submission.estimated_credits)  # the submit answer shows the live rate too
    queue.ensure_poller()
    return "submitted"


def resolve_credentials_alerts() -> int:
    """Close the credentials alerts and send the renders that waited on them now; returns how many waited."""
    GatewayAlert.objects.filter(kind=GatewayAlert.Kind.CREDENTIALS, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), pauses_submissions_until=None
    )
    released = Render.objects.filter(state=State.PENDING, error_code="credentials").update(
        next_attempt_at=timezone.now(), updated_at=timezone.now()
    )
    if released:
        queue.ensure_poller()  # the poller re-sends due submissions
    return released


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
            f"The gateway rejected the studio's API key{status_note(error)}: {error.message} "
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
            error=f"Retrying: {error.message} The studio will try again in {delay:.0f} s "
            f"(attempt {render.submit_attempts + 1} of {settings.STUDIO_SUBMIT_MAX_ATTEMPTS}); nothing was billed.",
            error_code="retrying",
        )
        queue.ensure_poller()  # the poller re-sends due submissions
        return "retry"
    advance(
        rid,
        State.SUBMITTING,
        State.FAILED,
        error=f"{error.message} The studio gave up after {render.submit_attempts} attempts; nothing was billed."
        if error.retryable
        else error.message,
        error_code="gateway_error",
        **NOTHING_BILLED,
    )
    return "failed"
