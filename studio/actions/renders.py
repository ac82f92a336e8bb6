"""Render actions: submit (with its budget hold), cancel, re-run exactly, make private or shared."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from studio import access, pricing, queue
from studio.lifecycle import cancel
from studio.lifecycle.transitions import advance
from studio.models import AT_GATEWAY, Render, State
from studio.money import ledger


@dataclass(frozen=True)
class RenderOrder:
    """A render as validated (by the studio form, the command line or a re-run): what do_submit_render records."""

    model: str
    prompt: str
    params: dict = field(default_factory=dict)  # the chosen model's parameters, as sent to the gateway
    init_image: Any = None  # a validated upload carrying `studio_format` (png, jpeg, webp), or None
    private: bool = False
    parent: Render | None = None  # the draft a promotion re-renders, checked against what the user may see
    client_token: uuid.UUID | None = None  # a double-clicked submit sends the same token twice
    variants: int = (
        1  # "Render ×N": N takes of this prompt at once, as one group (seeds counted up from `seed`)
    )


ACTIVE_TEAM = object()  # do_submit_render's default: the author's active team


def do_submit_render(user, order: RenderOrder, team=ACTIVE_TEAM) -> Render:
    """Record a validated render, hold its estimate against the budgets, and queue its submission on commit.

    Raises ledger.BudgetExceeded when a budget cannot cover the estimate: nothing is recorded or sent.
    A repeated `client_token` (a double-clicked submit) returns the render the first click made.
    With `order.variants` > 1 this is the first of the group; `do_submit_variants` returns them all.
    """
    return do_submit_variants(user, order, team)[0]


def variant_token(token: uuid.UUID | None, index: int) -> uuid.UUID | None:
    """The client token of a group's `index`-th variant (1-based): the form's own for the first, derived for the rest,
    so a double-clicked "Render ×N" finds every render of its first click."""
    if token is None or index == 1:
        return token
    return uuid.uuid5(token, f"variant-{index}")


def variant_params(order: RenderOrder, index: int) -> dict:
    """The parameters of the `index`-th variant: the order's, with the seed counted up from the one given (the
    form checked that the last one is still a seed); without a seed, every take draws its own."""
    seed = order.params.get("seed")
    if seed is None or index == 1:
        return order.params
    return {**order.params, "seed": seed + index - 1}


def do_submit_variants(user, order: RenderOrder, team=ACTIVE_TEAM) -> list[Render]:
    """Record `order.variants` renders of one prompt as one group, hold all their estimates at once (or none:
    ledger.BudgetExceeded, nothing recorded or sent) and queue their submissions on commit.

    The group shares one creation time, so every list sorted by newest keeps its variants side by side.
    """
    token, count = order.client_token, max(1, order.variants)
    if token:
        existing = Render.objects.filter(user=user, client_token=token).first()
        if existing:
            return _group_of(existing)
    quote = ledger.quote(order.model, order.params)
    group = uuid.uuid4() if count > 1 else None
    team = access.active_team(user) if team is ACTIVE_TEAM else team  # once: every take in the same team
    now = timezone.now()
    try:
        with transaction.atomic():
            renders = [
                Render.objects.create(
                    user=user,
                    team=team,
                    private=order.private,
                    seconds=quote.seconds,
                    model=order.model,
                    prompt=order.prompt,
                    params=variant_params(order, index),
                    client_token=variant_token(token, index),
                    estimated_cost=quote.total,
                    rate_per_second=quote.rate_per_second,
                    parent=order.parent,
                    variant_group=group,
                    variant_index=index if group else 0,
                    variant_count=count if group else 0,
                    created_at=now,
                    updated_at=now,
                )
                for index in range(1, count + 1)
            ]
            ledger.hold_all(
                renders
            )  # raises BudgetExceeded (rolling all of this back) before anything is sent
            for render in renders:
                _attach_init_image(render, order)
                queue.enqueue("submit_render", render.pk)
    except IntegrityError:
        return _group_of(Render.objects.get(user=user, client_token=token))
    return renders


def _attach_init_image(render: Render, order: RenderOrder) -> None:
    image = order.init_image
    draft = order.parent
    if image:
        extension = {"jpeg": "jpg"}.get(image.studio_format, image.studio_format)
        image.seek(0)  # each variant stores its own copy of the upload
        render.init_image.save(f"init.{extension}", image, save=True)
    elif draft is not None and draft.init_image:
        # A promotion without a new upload keeps the draft's image: copied, so each render owns its folder.
        with draft.init_image.open("rb") as source:
            render.init_image.save(PurePosixPath(str(draft.init_image.name)).name, File(source), save=True)


def _group_of(render: Render) -> list[Render]:
    """The render and the other variants of its group, first to last (a render on its own: just it)."""
    if render.variant_group is None:
        return [render]
    return list(
        Render.objects.filter(user=render.user_id, variant_group=render.variant_group).order_by(
            "variant_index"
        )
    )


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
    elif render.state in AT_GATEWAY and cancel.cancel_unsupported(render):
        message = "This gateway cannot cancel renders: it runs to the end and is billed as usual."
    elif advance(
        render.pk,
        [State.SUBMITTING, *AT_GATEWAY],
        where=Q(cancel_requested_at__isnull=True),
        cancel_requested_at=now,
        next_poll_at=now,
    ):
        cost = render.cancel_cost
        # The cancel reaches the gateway on the poller's next tick: promise nothing the gateway may not honour.
        message = (
            "Cancelling: free if the gateway has not started rendering it; once it has, the seconds rendered are "
            "billed."
            if render.state != State.RUNNING
            else f"Cancelling: the seconds rendered by then are billed (at least {pricing.dollars(cost)})."
        )
        queue.ensure_poller()
    elif render.cancel_requested_at and not render.is_terminal:
        message = "Already cancelling."
    else:
        message = f"Too late to cancel: the render is {render.get_state_display().lower()}."
    render.refresh_from_db()
    return CancelOutcome(render, message)


def do_toggle_private(render: Render, private: bool) -> Render:
    """Make a render private (only its author sees it) or shared with its team.

    The form says which way, so a double click sets the same value twice instead of flipping it back.
    """
    now = timezone.now()
    Render.objects.filter(pk=render.pk).update(private=private, updated_at=now)
    render.private, render.updated_at = private, now
    return render


@dataclass(frozen=True)
class RerunOutcome:
    render: Render | None  # the new render, or None when the original cannot be rendered again as it was
    message: str


def do_rerun_render(user, order: RenderOrder) -> RerunOutcome:
    """Render a render again exactly as `user`'s own new render, through the budget check of any submit.

    The order comes from `forms.rerun_order`, which validates the original as if the user had typed it in.
    """
    try:
        render = do_submit_render(user, order)
    except ledger.BudgetExceeded as error:
        return RerunOutcome(None, error.message)
    return RerunOutcome(
        render,
        f"Re-running exactly: about {pricing.dollars(render.estimated_cost)}, billed when it finishes.",
    )
