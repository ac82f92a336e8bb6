"""The client's address: REMOTE_ADDR, or what the trusted proxy in front says it saw.

With `STUDIO_BEHIND_PROXY` (default: `STUDIO_HTTPS`) the studio sits behind `STUDIO_PROXY_COUNT` proxies (1:
nginx or Caddy), each of which appends the address it received the request from to `X-Forwarded-For`. Anything
to the left of what those proxies appended was written by the client and may be forged, so the address is the
entry `STUDIO_PROXY_COUNT` places from the right: the right-most one no trusted proxy could have been fooled
about. Without a proxy the header is ignored entirely (anyone can send it).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(text: str) -> str:
    """`text` as a normalised IP address ("" if it is none): ports and IPv6 brackets are stripped."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 203.0.113.7:5000
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def client_address(request: HttpRequest) -> str:
    """The address the request came from, as text (an IPv4 or IPv6 address; "" if none can be told)."""
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if not settings.STUDIO_BEHIND_PROXY:
        return remote
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    count = settings.STUDIO_PROXY_COUNT
    if len(hops) < count:
        return remote  # the proxy did not add the header: the request did not come through it
    return _address(hops[-count]) or remote
