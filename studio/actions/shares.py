"""Share links outside the team: make one, revoke it, count a view. Each a single write, conditional where two
requests may race."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from studio.models import Render, ShareLink


def do_create_share(render: Render, user, days: int) -> ShareLink:
    """A new share link of a finished clip, live for `days` (the caller checked who may share and the clip)."""
    now = timezone.now()
    return ShareLink.objects.create(
        render=render, created_by=user, created_at=now, expires_at=now + timedelta(days=days)
    )


def do_revoke_share(link: ShareLink, user) -> ShareLink:
    """Revoke a link at once (revoking it again changes nothing: the first revocation keeps its who and when)."""
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    )
    link.refresh_from_db(fields=["revoked_at", "revoked_by"])
    return link


def do_count_share_view(link: ShareLink) -> None:
    """One more view of the share page, counted in the database (two viewers at once are two views)."""
    ShareLink.objects.filter(pk=link.pk).update(views=F("views") + 1)
    link.refresh_from_db(fields=["views"])
