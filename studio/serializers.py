"""Renders as plain data, for the command line and scripts."""

from __future__ import annotations

from studio.models import LedgerKind, Render

ENDS_A_HOLD = (LedgerKind.SETTLE, LedgerKind.RELEASE)


def _money(value) -> str | None:
    return None if value is None else str(value)


def _when(value) -> str | None:
    return value.isoformat() if value else None


def settled_cost(render: Render) -> str | None:
    """What the ledger settled for the render ($0 when it released the hold), or None while it holds.

    Reads `render.ledger.all()`, so a list prefetches "ledger" once instead of a query per render.
    """
    ended = [entry.amount for entry in render.ledger.all() if entry.kind in ENDS_A_HOLD]
    return _money(ended[0]) if ended else None


def render_as_dict(render: Render) -> dict:
    """Everything a script needs about a render (never the pre-signed result URL)."""
    return {
        "id": str(render.pk),
        "user": render.user.get_username(),
        "state": render.state,
        "model": render.model,
        "prompt": render.prompt,
        "params": render.params,
        "gateway_task_id": render.gateway_task_id or None,
        "error": render.error or None,
        "error_code": render.error_code or None,
        "progress": render.progress,
        "estimated_cost": _money(render.estimated_cost),
        "billed_cost": _money(render.billed_cost),
        "billed_credits": _money(render.billed_credits),
        "settled_cost": settled_cost(render),  # e.g. the estimate when the gateway reported no bill
        "video": render.video.path if render.video else None,
        "poster": render.poster.path if render.poster else None,
        "video_duration": render.video_duration,
        "video_size": [render.video_width, render.video_height] if render.video_width else None,
        "created_at": _when(render.created_at),
        "submitted_at": _when(render.submitted_at),
        "finished_at": _when(render.finished_at),
        "result_expires_at": _when(render.result_expires_at),
    }
