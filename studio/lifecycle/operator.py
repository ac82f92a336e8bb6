"""Operator actions for renders that left the happy path and wait on a person: each one a conditional update,
safe to repeat, used by `manage.py renders …`, the admin and the staff actions on a render's detail page.

- attach: a `submit_unknown` render did reach the gateway as task T: poll T and finish as usual, settling once;
- not sent: it never reached the gateway: release its hold, or send it again as a new attempt (`resubmit`);
- recheck: ask the gateway now about a `stalled` render (or a `submit_unknown` one with a task id) and resume it
  if the gateway answers;
- resolve an alert: close it; a credentials alert also sends the renders that waited on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from studio import queue
from studio.gateway.client import GatewayClient
from studio.gateway.types import GatewayError, TaskState
from studio.lifecycle import transitions
from studio.lifecycle.poll import apply_status
from studio.lifecycle.submit import resolve_credentials_alerts
from studio.lifecycle.transitions import NOTHING_BILLED, advance
from studio.models import GatewayAlert, Render, State

log = logging.getLogger("studio.lifecycle")

RECHECKABLE = (State.STALLED, State.SUBMIT_UNKNOWN)
ATTACH, NOT_SENT, RECHECK = "attach", "not_sent", "recheck"


@dataclass(frozen=True)
class Outcome:
    done: bool  # the action changed the render (False: it was not in a state the action applies to)
    message: str


def applicable(render: Render) -> frozenset[str]:
    """The actions that apply to the render as it is now: the conditions of their conditional updates, for the
    pages that offer them (each action checks again when it runs)."""
    actions = set()
    if render.state == State.SUBMIT_UNKNOWN:
        actions.add(ATTACH)
        if not render.gateway_task_id:
            actions.add(NOT_SENT)
    if render.state in RECHECKABLE and render.gateway_task_id:
        actions.add(RECHECK)
    return frozenset(actions)


def _close_render_alerts(render_id, *kinds: str) -> None:
    GatewayAlert.objects.filter(render_id=render_id, kind__in=kinds, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


def _resumed(task_id: str, **fields) -> dict:
    """The columns of a render the gateway has again: due for a poll now, no error, not finished."""
    now = timezone.now()
    return {
        "gateway_task_id": task_id,
        "finished_at": None,
        "next_poll_at": now,
        "next_attempt_at": None,
        "lease_until": None,
        "poll_errors": 0,
        "error": "",
        "error_code": "",
        **fields,
    }


def attach(render_id, task_id: str) -> Outcome:
    """Record that a `submit_unknown` render reached the gateway as `task_id`; it is polled from now on."""
    task_id = task_id.strip()
    if not task_id:
        return Outcome(False, "Give the gateway's task id.")
    if Render.objects.filter(gateway_task_id=task_id).exclude(pk=render_id).exists():
        return Outcome(False, f"Task {task_id} already belongs to another render.")
    moved = advance(
        render_id,
        State.SUBMIT_UNKNOWN,
        State.QUEUED,
        where=Q(gateway_task_id="") | Q(gateway_task_id=task_id),
        **_resumed(task_id, submitted_at=timezone.now()),
    )
    if not moved:
        return Outcome(False, "Only a render whose submission outcome is unknown can be attached to a task.")
    _close_render_alerts(render_id, GatewayAlert.Kind.SUBMIT_UNKNOWN)
    queue.ensure_poller()
    log.warning("Render %s attached to gateway task %s by an operator", render_id, task_id)
    return Outcome(True, f"Attached to gateway task {task_id}: it is polled from now on.")


def not_sent(render_id, *, resubmit: bool = False) -> Outcome:
    """Record that a `submit_unknown` render never reached the gateway: release its hold, or send it again."""
    unsent = Q(gateway_task_id="")
    if resubmit:
        moved = advance(
            render_id,
            State.SUBMIT_UNKNOWN,
            State.PENDING,
            where=unsent,
            finished_at=None,
            next_attempt_at=None,
            error="",
            error_code="",
        )
        message = "Sent again as a new attempt; its budget hold stays in place."
        if moved:
            queue.enqueue("submit_render", render_id)
    else:
        moved = advance(
            render_id,
            State.SUBMIT_UNKNOWN,
            State.FAILED,
            where=unsent,
            error="It never reached the gateway (an operator checked): nothing was billed.",
            error_code="not_sent",
            **NOTHING_BILLED,
        )
        message = "Marked as never sent: its hold is released."
    if not moved:
        return Outcome(
            False, "Only a render whose submission outcome is unknown, with no task id, can be marked."
        )
    _close_render_alerts(render_id, GatewayAlert.Kind.SUBMIT_UNKNOWN)
    log.warning("Render %s marked not sent by an operator (resubmit=%s)", render_id, resubmit)
    return Outcome(True, message)


def recheck(render_id, client: GatewayClient | None = None) -> Outcome:
    """Poll a stalled render (or a submit_unknown one that has a task id) now, and resume it if the gateway answers."""
    render = Render.objects.filter(pk=render_id, state__in=RECHECKABLE).exclude(gateway_task_id="").first()
    if render is None:
        return Outcome(
            False, "Only a stalled render, or one with an unknown outcome and a task id, is rechecked."
        )
    own_client = client is None
    client = client or transitions.client_factory()
    try:
        status = client.poll(render.model, render.gateway_task_id)
    except GatewayError as error:
        return Outcome(
            False, f"The gateway did not answer for task {render.gateway_task_id}: {error.message}"
        )
    finally:
        if own_client:
            client.close()
    state = State.QUEUED if status.state == TaskState.QUEUED else State.RUNNING
    if not advance(render.pk, render.state, state, **_resumed(render.gateway_task_id)):
        return Outcome(False, "The render changed meanwhile; look again.")
    _close_render_alerts(render.pk, GatewayAlert.Kind.STALLED, GatewayAlert.Kind.SUBMIT_UNKNOWN)
    render.refresh_from_db()
    result = apply_status(render, status)
    queue.ensure_poller()
    log.warning("Render %s rechecked by an operator: the gateway says %s", render.pk, status.state)
    return Outcome(True, f"The gateway says {status.state}: {result}.")


def resolve_alert(alert: GatewayAlert) -> Outcome:
    """Close an alert; closing a credentials alert sends the renders that waited on it at once."""
    if alert.kind == GatewayAlert.Kind.CREDENTIALS:
        released = resolve_credentials_alerts()
        return Outcome(True, f"Resolved; {released} waiting render(s) sent now.")
    closed = GatewayAlert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), pauses_submissions_until=None
    )
    return Outcome(bool(closed), "Resolved." if closed else "It was already resolved.")
