"""Context every page needs: which gateway the studio talks to, and alerts an operator must see."""

from __future__ import annotations

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from studio import access
from studio.catalog import MODELS
from studio.lifecycle import cancel
from studio.models import GatewayAlert

ALERTS_SHOWN = 5  # open alerts listed in the staff banner; the rest are counted, with a link to the admin


def gateway_banner(request) -> dict:
    """The emulator banner and open gateway alerts (details for staff, a plain notice for everyone else)."""
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    # Lazy: a fragment that shows no banner costs no query.
    fetched = SimpleLazyObject(
        lambda: (
            list(GatewayAlert.objects.filter(resolved_at__isnull=True)[: ALERTS_SHOWN + 1])
            if signed_in
            else []
        )
    )
    alerts = SimpleLazyObject(lambda: fetched[:ALERTS_SHOWN])
    return {
        "using_emulator": settings.USING_EMULATOR,
        "gateway_host": settings.BYTESPIKE_BASE_URL,
        "gateway_alerts": alerts,
        "more_alerts": SimpleLazyObject(lambda: len(fetched) > ALERTS_SHOWN),
        "submissions_paused": SimpleLazyObject(
            lambda: any(a.kind == GatewayAlert.Kind.CREDENTIALS for a in fetched)
        ),
    }


def navigation(request) -> dict:
    """The team switcher and the reviewer's badge, computed only when a template shows them, from the request's
    Viewer: what the view already read of the user's teams is not read again."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    viewer = access.viewer(request)
    return {
        "memberships": SimpleLazyObject(lambda: viewer.memberships),
        "active_team": SimpleLazyObject(lambda: viewer.active_team),
        "reviews_somewhere": SimpleLazyObject(lambda: bool(viewer.reviewer_team_ids)),
        "to_review_count": SimpleLazyObject(
            lambda: (
                access.to_review(user, team_ids=viewer.reviewer_team_ids).count()
                if viewer.reviewer_team_ids
                else 0
            )
        ),
    }


def gateway_capabilities(request) -> dict:
    """`cancel_unsupported`: the models whose cancel this gateway is known not to support (the card says so instead
    of offering Cancel). One query for a whole response, however many cards it renders, and none for a response
    that shows no card: the lazy set is kept on the request, as a response may render several partials."""
    unsupported = getattr(request, "_studio_cancel_unsupported", None)
    if unsupported is None:
        unsupported = SimpleLazyObject(_models_without_cancel)
        setattr(request, "_studio_cancel_unsupported", unsupported)  # noqa: B010 (not an HttpRequest attribute)
    return {"cancel_unsupported": unsupported}


def _models_without_cancel() -> frozenset[str]:
    protocols = cancel.unsupported_protocols()
    return frozenset(key for key, spec in MODELS.items() if str(spec.protocol) in protocols)
