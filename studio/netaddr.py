"""The client's address, as far as the studio can trust it.

Without a proxy (the default) it is the socket's peer, REMOTE_ADDR: a header cannot change it. Behind a proxy
(`STUDIO_BEHIND_PROXY`, on by default with `STUDIO_HTTPS=1`) REMOTE_ADDR is the proxy, and the client is the
right-most X-Forwarded-For entry: the one our proxy appended. Entries to its left came from the client and can say
anything, so they are never used.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "unknown"


def client_address(request: HttpRequest) -> str:
    """The address of whoever sent this request (see the module docstring for whom the studio believes)."""
    address = request.META.get("REMOTE_ADDR") or UNKNOWN
    if settings.STUDIO_BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            address = last
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return UNKNOWN
