"""How a render moves on: the one conditional update every step uses, and what every step shares.

Every step follows the same rules (shared/RELIABILITY.md): take the render by id, claim it with a conditional
update, talk to the gateway outside any transaction, then write the outcome with another conditional update
that changes nothing if someone else got there first.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from studio import pricing
from studio.gateway.client import GatewayClient
from studio.gateway.types import GatewayError
from studio.models import TERMINAL, Render
from studio.money import ledger

log = logging.getLogger("studio.lifecycle")

# Settled for outcomes the gateway documents as not billed (4xx/5xx at submit, failed tasks, free cancels).
# Column values for advance(**fields): dict[str, Any], as they mix values and F() expressions.
NOTHING_BILLED: dict[str, Any] = {"billed_cost": Decimal("0"), "billed_credits": Decimal("0")}


def client_factory() -> GatewayClient:
    """A gateway client for the configured gateway. Tests replace it to inject transports."""
    return GatewayClient()


def advance(render_id, from_states, to_state: str | None = None, *, where: Q | None = None, **fields) -> bool:
    """Move a render on, only if it is still in one of `from_states`: the one way the studio changes state.

    Returns False (and changes nothing) when another worker, a retry or the user got there first.
    """
    if isinstance(from_states, str):
        from_states = [from_states]
    now = timezone.now()
    if to_state is not None:
        fields["state"] = to_state
        if to_state in TERMINAL:
            fields.setdefault("finished_at", now)
            fields.setdefault("next_poll_at", None)
            fields.setdefault("next_attempt_at", None)
            fields.setdefault("lease_until", None)
    fields["updated_at"] = now
    rows = Render.objects.filter(pk=render_id, state__in=list(from_states))
    if where is not None:
        rows = rows.filter(where)
    moved = rows.update(**fields) == 1
    if moved and to_state is not None:
        log.info("Render %s is now %s", render_id, to_state)  # the line an operator follows a render by
    if moved and to_state in TERMINAL:
        # The hold ends the moment the render does; a crash in between is mended by the sweep.
        transaction.on_commit(lambda: ledger.settle(render_id), robust=True)
    return moved


def scaled(seconds: float) -> float:
    """A cadence interval in this studio's time (tests and benchmarks speed the clock up)."""
    return seconds * settings.STUDIO_POLL_SCALE


def billed_fields(credits: Decimal | None) -> dict:
    """The columns that record a bill, or none when the gateway reported none."""
    if credits is None:
        return {}
    return {"billed_credits": credits, "billed_cost": pricing.credits_to_usd(credits)}


def status_note(error: GatewayError) -> str:
    """ " (401)" for an answer from the gateway; nothing for a key the client refused to send at all."""
    return f" ({error.status})" if error.status else ""
