"""Context every page needs: which gateway the studio talks to, and alerts an operator must see."""

from __future__ import annotations

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from studio import access
from studio.models import GatewayAlert, Membership, Role


def gateway_banner(request) -> dict:
    """The emulator banner and open gateway alerts (details for staff, a plain notice for everyone else)."""
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    # Lazy: a fragment that shows no banner costs no query.
    alerts = SimpleLazyObject(
        lambda: list(GatewayAlert.objects.filter(resolved_at__isnull=True)[:5]) if signed_in else []
    )
    return {
        "using_emulator": settings.USING_EMULATOR,
        "gateway_host": settings.BYTESPIKE_BASE_URL,
        "gateway_alerts": alerts,
        "submissions_paused": SimpleLazyObject(
            lambda: any(a.kind == GatewayAlert.Kind.CREDENTIALS for a in alerts)
        ),
    }


def navigation(request) -> dict:
    """The team switcher and the reviewer's badge, computed only when a template shows them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = SimpleLazyObject(
        lambda: list(Membership.objects.filter(user=user).select_related("team").order_by("team__name"))
    )
    reviews = SimpleLazyObject(lambda: {m.team_id for m in memberships if m.allows(Role.REVIEWER)})
    return {
        "memberships": memberships,
        "active_team": SimpleLazyObject(lambda: access.active_team(user)),
        "reviews_somewhere": SimpleLazyObject(lambda: bool(reviews)),
        "to_review_count": SimpleLazyObject(
            lambda: access.to_review(user, team_ids=set(reviews)).count() if reviews else 0
        ),
    }
