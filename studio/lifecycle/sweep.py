"""The sweep: revive anything stuck, from the database alone (a lost task, a dead poller, a restart)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from studio import queue
from studio.lifecycle.transitions import advance
from studio.models import IN_FLIGHT, GatewayAlert, Render, State
from studio.money import ledger


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
    settled = ledger.settle_missing()
    in_flight = Render.objects.filter(state__in=IN_FLIGHT).exists()
    if in_flight:
        queue.ensure_poller()
    return {
        "submit_unknown": unknown,
        "downloads_revived": revived,
        "settled": settled,
        "in_flight": in_flight,
    }
