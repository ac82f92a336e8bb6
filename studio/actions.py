"""Writes with side effects: every one goes through a `do_*` function that owns its transaction and queueing."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from studio import access, pricing
from studio.forms import RenderForm
from studio.models import AT_GATEWAY, Render, State, advance
from studio.tasks import enqueue, ensure_poller


def do_submit_render(user, form: RenderForm) -> Render:
    """Record a validated render and queue its submission once the row is committed.

    A repeated `client_token` (a double-clicked submit) returns the render the first click made.
    """
    data = form.cleaned_data
    token = data.get("client_token")
    if token:
        existing = Render.objects.filter(user=user, client_token=token).first()
        if existing:
            return existing
    params = form.params
    quote = pricing.estimate(data["model"], params)
    try:
        with transaction.atomic():
            render = Render.objects.create(
                user=user,
                team=access.active_team(user),
                private=bool(data.get("private")),
                seconds=quote.seconds,
                model=data["model"],
                prompt=data["prompt"],
                params=params,
                client_token=token,
                estimated_cost=quote.total,
                rate_per_second=quote.rate_per_second,
            )
            image = data.get("init_image")
            if image:
                extension = {"jpeg": "jpg"}.get(image.studio_format, image.studio_format)
                render.init_image.save(f"init.{extension}", image, save=True)
            enqueue("submit_render", render.pk)
    except IntegrityError:
        return Render.objects.get(user=user, client_token=token)
    return render


@dataclass(frozen=True)
class CancelOutcome:
    render: Render
    message: str


def do_cancel_render(render: Render) -> CancelOutcome:
    """Cancel a render: at once and free before submission, through the gateway once it has the task."""
    now = timezone.now()
    if advance(
        render.pk, State.PENDING, State.CANCELLED, cancel_requested_at=now, billed_cost=0, billed_credits=0
    ):
        message = "Cancelled before it reached the gateway: nothing was billed."
    elif advance(
        render.pk,
        [State.SUBMITTING, *AT_GATEWAY],
        where=Q(cancel_requested_at__isnull=True),
        cancel_requested_at=now,
        next_poll_at=now,
    ):
        cost = render.cancel_cost
        message = (
            "Cancelling: free while queued."
            if render.state != State.RUNNING
            else f"Cancelling: the seconds rendered so far are billed (about {pricing.dollars(cost)})."
        )
        ensure_poller()
    elif render.cancel_requested_at and not render.is_terminal:
        message = "Already cancelling."
    else:
        message = f"Too late to cancel: the render is {render.get_state_display().lower()}."
    render.refresh_from_db()
    return CancelOutcome(render, message)
