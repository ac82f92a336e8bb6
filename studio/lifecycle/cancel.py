"""Cancel: send the user's cancel to the gateway without ever holding up the render's polling.

Neither gateway page documents a cancel path, so a real gateway may refuse ours. A cancel is tried on the poll
ticks that follow the click, a bounded number of times; a 404 or 405 from the cancel path means this gateway
cannot cancel for that protocol, which is remembered (GatewayCapability) so the button stops offering it. Either
way the render is polled as usual and completes, fails or expires normally; its card says what became of the
cancel (Render.cancel_note).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from studio.catalog import MODELS
from studio.gateway.client import GatewayClient
from studio.gateway.types import GatewayError, NotCancellable, NotFound, TaskState
from studio.lifecycle.transitions import advance, billed_fields
from studio.models import AT_GATEWAY, GatewayAlert, GatewayCapability, Render, State

log = logging.getLogger("studio.lifecycle")

MAX_CANCEL_ATTEMPTS = 3  # cancels the gateway failed to answer before the studio stops asking
UNSUPPORTED_STATUSES = (404, 405)  # the cancel path itself does not exist at this gateway


def _protocol(render: Render) -> str:
    return str(MODELS[render.model].protocol)


def cancel_unsupported(render: Render) -> bool:
    """Whether this gateway is known to have no cancel path for the render's protocol."""
    return GatewayCapability.objects.filter(
        base_url=settings.BYTESPIKE_BASE_URL, protocol=_protocol(render), can_cancel=False
    ).exists()


def unsupported_protocols() -> set[str]:
    """The protocols the configured gateway cannot cancel: one query for a page of cards."""
    return set(
        GatewayCapability.objects.filter(base_url=settings.BYTESPIKE_BASE_URL, can_cancel=False).values_list(
            "protocol", flat=True
        )
    )


def _remember(render: Render, can_cancel: bool, note: str = "") -> None:
    GatewayCapability.objects.update_or_create(
        base_url=settings.BYTESPIKE_BASE_URL,
        protocol=_protocol(render),
        defaults={"can_cancel": can_cancel, "note": note, "checked_at": timezone.now()},
    )


def wants_cancel(render: Render) -> bool:
    """Whether a cancel is still to be sent: asked for, not yet answered for good, attempts left."""
    return (
        render.cancel_requested_at is not None
        and not render.cancel_note
        and render.cancel_attempts < MAX_CANCEL_ATTEMPTS
        and not render.is_terminal
    )


def _give_up(render: Render, note: str) -> None:
    """Record that the cancel will not happen; the render carries on to its normal end."""
    if advance(render.pk, AT_GATEWAY, cancel_note=note):
        GatewayAlert.raise_alert(
            GatewayAlert.Kind.CANCEL_REFUSED, f"Render {render.pk}: {note}", render=render
        )
    log.warning("Render %s: %s", render.pk, note)


def cancel_step(render: Render, client: GatewayClient) -> str:
    """Try to cancel once. 'cancelled' when the gateway stopped it, else 'poll': the caller polls as usual."""
    if cancel_unsupported(render):
        _give_up(render, "This gateway cannot cancel renders, so it runs to the end and is billed as usual.")
        return "poll"
    try:
        result = client.cancel(render.model, render.gateway_task_id)
    except NotCancellable:
        # It finished (or failed) before the cancel reached it: the poll that follows records the outcome.
        advance(
            render.pk,
            AT_GATEWAY,
            error="It finished before the cancel reached the gateway.",
            cancel_note="It finished before the cancel reached the gateway.",
        )
        return "poll"
    except GatewayError as error:
        if error.status in UNSUPPORTED_STATUSES or isinstance(error, NotFound):
            _remember(render, False, f"The cancel path answered {error.status}.")
            _give_up(
                render,
                f"This gateway cannot cancel renders (it answered {error.status}), so it runs to the end and "
                "is billed as usual.",
            )
            return "poll"
        attempts = render.cancel_attempts + 1
        advance(render.pk, AT_GATEWAY, cancel_attempts=F("cancel_attempts") + 1)
        log.warning("Cancelling render %s failed (attempt %s): %s", render.pk, attempts, error.message)
        if attempts >= MAX_CANCEL_ATTEMPTS:
            _give_up(
                render,
                f"The gateway refused the cancel {attempts} times (last: {error.message}), so it runs to the "
                "end and is billed as usual.",
            )
        return "poll"
    if result.state != TaskState.CANCELLED:
        return "poll"
    _remember(render, True)
    billed = billed_fields(result.billed_credits if result.billed_credits is not None else Decimal("0"))
    if advance(render.pk, AT_GATEWAY, State.CANCELLED, error="", error_code="cancelled", **billed):
        return "cancelled"
    return "skipped"
