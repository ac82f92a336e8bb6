"""Login throttling that holds: failures are counted in the shared cache (the database, or Redis with
REDIS_URL), so every web process sees them and a restart does not forget them.

A username and a client address are counted apart, each with its own limit (an IPv6 address counts as its /64:
`netaddr.address_group`):
- a username is locked after `STUDIO_LOGIN_USER_FAILURES` (5) failures, from any address: guessing one person's
  password from many addresses gets no further;
- an address is locked after `STUDIO_LOGIN_ADDRESS_FAILURES` (20) failures, whatever the usernames: trying many
  usernames from one place gets no further;
- a wrong password for one user never locks out another user at the same address (an office behind one NAT):
  that user's own count locks first, and attempts refused by a lock are not counted.
Each lock lasts `STUDIO_LOGIN_LOCK_SECONDS` (1 min) and doubles with every failure past the limit, up to
`STUDIO_LOGIN_LOCK_MAX_SECONDS` (15 min); the failures are forgotten after `STUDIO_LOGIN_FORGET_SECONDS` (a day)
without one. A successful login forgets its username's failures (not its address's).

On the database cache two failures at the very same moment may count as one (its increment is a read and a
write); Redis counts exactly. Either way a guesser is held to a handful of tries per lock.

Password-reset e-mails are counted too (`reset_allowed`), in the same cache, so that the form cannot be used to
flood someone's mailbox or to send mail in bulk: an e-mail address gets at most `STUDIO_RESET_EMAIL_LIMIT` (3)
reset e-mails, and a client address may ask at most `STUDIO_RESET_ADDRESS_LIMIT` (10) times, until an hour
(`STUDIO_RESET_WINDOW_SECONDS`) passes without one. Past the first the page still says "sent" and sends nothing
(it must not tell whether an account has that address); past the second the form says to wait.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

from studio.netaddr import address_group


def _user_key(username: str) -> str:
    return f"login-failures:user:{_hashed(username)}"


def _address_key(address: str) -> str:
    return f"login-failures:address:{address_group(address)}"


def _counted(username: str, address: str) -> list[tuple[str, int]]:
    return [
        (_user_key(username), settings.STUDIO_LOGIN_USER_FAILURES),
        (_address_key(address), settings.STUDIO_LOGIN_ADDRESS_FAILURES),
    ]


def locked_seconds(username: str, address: str) -> int:
    """How long this username or this address is still locked out, in whole seconds (0: not locked)."""
    now = time.time()
    ends = cache.get_many([f"{key}:lock" for key, _ in _counted(username, address)]).values()
    return max([math.ceil(end - now) for end in ends] + [0])


def lock_for(failures: int, limit: int) -> int:
    """The lock after `failures` failures against a limit of `limit`: none below it, then doubling, capped."""
    if failures < limit:
        return 0
    doublings = min(failures - limit, 32)  # past the cap anyway; keeps the number small
    return min(settings.STUDIO_LOGIN_LOCK_SECONDS * 2**doublings, settings.STUDIO_LOGIN_LOCK_MAX_SECONDS)


def record_failure(username: str, address: str) -> None:
    """Count a failed login against the username and the address; lock either that reached its limit."""
    forget = settings.STUDIO_LOGIN_FORGET_SECONDS
    for key, limit in _counted(username, address):
        failures = _count(key, forget)
        seconds = lock_for(failures, limit)
        if seconds:
            cache.set(f"{key}:lock", time.time() + seconds, seconds)


def _count(key: str, timeout: int) -> int:
    """Add one to a counter forgotten `timeout` seconds after its last count; the new count.

    The `touch` is needed: the database cache's `incr` saves the value again with the cache's default timeout (5
    minutes), so without it a counter meant to last an hour was forgotten after five quiet minutes."""
    cache.add(key, 0, timeout)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between the two calls
        cache.set(key, 1, timeout)
        count = 1
    cache.touch(key, timeout)
    return count


def _hashed(value: str) -> str:
    # Hashed: a username or an e-mail address may hold characters a cache key must not, and the cache need not
    # hold it in clear.
    return hashlib.sha256(value.strip().casefold().encode()).hexdigest()


def reset_allowed(kind: str, value: str) -> bool:
    """Count one password-reset request by `kind` ("email": one e-mail sent to that address, "address": one
    request from that client address) and whether it is within the hour's limit."""
    limit = {"email": settings.STUDIO_RESET_EMAIL_LIMIT, "address": settings.STUDIO_RESET_ADDRESS_LIMIT}[kind]
    if kind == "address":
        value = address_group(value)
    return _count(f"reset:{kind}:{_hashed(value)}", settings.STUDIO_RESET_WINDOW_SECONDS) <= limit


def record_success(username: str) -> None:
    """The right password: forget this username's failures (an address keeps its count)."""
    key = _user_key(username)
    cache.delete_many([key, f"{key}:lock"])
