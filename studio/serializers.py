"""Renders as plain data, for the command line and scripts."""

from __future__ import annotations

from studio.models import Render


def _money(value) -> str | None:
    return None if value is None else str(value)


def _when(value) -> str | None:
    return value.isoformat() if value else None


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
        "video": render.video.path if render.video else None,
        "poster": render.poster.path if render.poster else None,
        "video_duration": render.video_duration,
        "video_size": [render.video_width, render.video_height] if render.video_width else None,
        "created_at": _when(render.created_at),
        "submitted_at": _when(render.submitted_at),
        "finished_at": _when(render.finished_at),
        "result_expires_at": _when(render.result_expires_at),
    }
