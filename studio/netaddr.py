"""The client's address, as far as the studio can trust it: REMOTE_ADDR, or what the trusted proxy in front saw.

Without a proxy (the default) it is the socket's peer, REMOTE_ADDR: a header cannot change it. Behind
`STUDIO_PROXY_COUNT` proxies (`STUDIO_BEHIND_PROXY`, on by default with `STUDIO_HTTPS=1`; 1 for nginx or Caddy
alone), each of which appends the address it received the request from to `X-Forwarded-For`, REMOTE_ADDR is the
proxy and the client is the entry `STUDIO_PROXY_COUNT` places from the right: the right-most one no trusted proxy
could have been fooled about. Entries to its left came from the client and can say anything, so they are never
used. An address that cannot be read is "unknown" (one bucket for all such requests, never someone else's).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "unknown"


def _address(text: str) -> str:
    """`text` as a normalised IP address (UNKNOWN if it is none): ports and IPv6 brackets are stripped."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 203.0.113.7:5000
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return UNKNOWN


def client_address(request: HttpRequest) -> str:
    """The address of whoever sent this request, as text (an IPv4 or IPv6 address, or "unknown")."""
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if not settings.STUDIO_BEHIND_PROXY:
        return remote
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    count = settings.STUDIO_PROXY_COUNT
    if len(hops) < count:
        return remote  # the proxy did not add the header: the request did not come through it
    return _address(hops[-count])


def address_group(address: str) -> str:
    """What a per-address limit counts: an IPv4 address itself, an IPv6 address's /64 (one subscriber's or one
    machine's network: a client there can take any of its 2^64 addresses, so counting them one by one would let
    it step round every limit). "unknown" stays one bucket."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client seen through a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
