"""`/healthz` for load balancers and `/metrics` for Prometheus: the two URLs for machines, not people.

/healthz needs no login and tells nothing but which part fails. /metrics is served to a request from loopback
that no proxy forwarded, or to one carrying `Authorization: Bearer <STUDIO_METRICS_TOKEN>`; anyone else gets the
same 404 as for a page that does not exist, so the studio does not say it has metrics at all.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from studio import health, metrics

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 and {"status": "ok", ...} when the database, the broker and the poller are healthy; else 503."""
    checks = health.check()
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503
    )


def may_scrape(request: HttpRequest) -> bool:
    """The configured bearer token, or loopback with no proxy in between (a proxy on this machine is loopback)."""
    token = settings.STUDIO_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    if any(header in request.META for header in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format: this machine's processes' counters and what the database knows."""
    if not may_scrape(request):
        raise Http404
    return HttpResponse(metrics.exposition(health.DatabaseCollector()), content_type=CONTENT_TYPE_LATEST)


urlpatterns = [path("healthz", healthz, name="healthz"), path("metrics", metrics_view, name="metrics")]
