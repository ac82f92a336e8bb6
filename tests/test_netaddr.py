"""The client's address (studio/netaddr.py): REMOTE_ADDR, or the right-most untrusted X-Forwarded-For entry."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from studio.netaddr import address_group, client_address


def request(remote: str = "10.0.0.5", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_a_proxy_the_forwarded_header_is_ignored(settings):
    settings.STUDIO_BEHIND_PROXY = False
    assert client_address(request("198.51.100.7", forwarded="203.0.113.1")) == "198.51.100.7"


def test_behind_one_proxy_the_address_it_appended_is_the_clients(settings):
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 1
    assert client_address(request("127.0.0.1", forwarded="203.0.113.1")) == "203.0.113.1"


def test_what_a_client_wrote_into_the_header_itself_is_not_believed(settings):
    """A client sending "X-Forwarded-For: 1.2.3.4" gets its real address appended after it by the proxy."""
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 1
    spoofed = request("127.0.0.1", forwarded="1.2.3.4, 5.6.7.8, 203.0.113.1")
    assert client_address(spoofed) == "203.0.113.1"


def test_behind_two_proxies_the_entry_the_outer_one_appended(settings):
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 2
    chained = request("127.0.0.1", forwarded="1.2.3.4, 203.0.113.1, 10.0.0.2")
    assert client_address(chained) == "203.0.113.1"


def test_a_request_that_did_not_come_through_the_proxy_is_its_remote_address(settings):
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 2
    assert client_address(request("10.0.0.9")) == "10.0.0.9"
    assert client_address(request("10.0.0.9", forwarded="203.0.113.1")) == "10.0.0.9"


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("203.0.113.1:5000", "203.0.113.1"),
        (" 203.0.113.1 ", "203.0.113.1"),
    ],
)
def test_ports_brackets_and_case_are_normalised(settings, entry, address):
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 1
    assert client_address(request("127.0.0.1", forwarded=entry)) == address


def test_an_unreadable_entry_is_unknown_never_the_proxys_address(settings):
    """Not the proxy's own address: that would lump every such request with every request the proxy makes."""
    settings.STUDIO_BEHIND_PROXY, settings.STUDIO_PROXY_COUNT = True, 1
    assert client_address(request("127.0.0.1", forwarded="not-an-address")) == "unknown"


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:5:7:a:b:c:d", "2001:db8:5:7::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client seen through a dual-stack socket
        ("unknown", "unknown"),
    ],
)
def test_a_per_address_limit_counts_an_ipv4_address_or_an_ipv6_64(address, group):
    assert address_group(address) == group
