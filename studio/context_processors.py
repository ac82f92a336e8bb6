"""Context every page needs: which gateway the studio talks to, and alerts an operator must see."""

from __future__ import annotations

from django.conf import settings

from studio.models import GatewayAlert


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
