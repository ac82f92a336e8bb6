"""Context every page needs: which gateway the studio talks to, and alerts an operator must see."""

from __future__ import annotations

from django.conf import settings

from studio import access
from studio.models import GatewayAlert, Membership


def gateway_banner(request) -> dict:
    """The emulator banner and open gateway alerts (details for staff, a plain notice for everyone else)."""
    alerts = []
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        alerts = list(GatewayAlert.objects.filter(resolved_at__isnull=True)[:5])
    return {
        "using_emulator": settings.USING_EMULATOR,
        "gateway_host": settings.BYTESPIKE_BASE_URL,
        "gateway_alerts": alerts,
        "submissions_paused": any(a.kind == GatewayAlert.Kind.CREDENTIALS for a in alerts),
    }


def navigation(request) -> dict:
    """The team switcher and the reviewer's badge, on every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "memberships": list(Membership.objects.filter(user=user).select_related("team")),
        "active_team": access.active_team(user),
        "to_review_count": access.to_review(user).count() if access.reviewer_team_ids(user) else 0,
    }
