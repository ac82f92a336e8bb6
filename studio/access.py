"""The one place that decides what a user may see: every page, fragment, action and file goes through it."""

from __future__ import annotations

from django.http import Http404

from studio.models import Render


def get_render_for_user(user, render_id) -> Render:
    """The render if this user may see it; 404 otherwise (an outsider cannot tell it exists)."""
    render = Render.objects.for_user(user).filter(pk=render_id).first()
    if render is None:
        raise Http404("No such render.")
    return render
