"""Login throttling that holds: failures are counted per username and per address apart, in the shared cache
(the database cache on SQLite, Redis in the PostgreSQL + Redis run), with a back-off, and a restart keeps them.

The decisions (studio/throttle.py, README "Accounts"): 5 failures lock a username from every address; 20 lock an
address for every username; a lock lasts 1 minute and doubles with each failure past the limit, up to 15 minutes;
attempts refused by a lock are not counted; the right password forgets its username's failures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, RequestFactory

from studio import throttle
from studio.netaddr import client_address
from tests.conftest import database_url

LOCKED = "Too many failed attempts"
X, Y = "198.51.100.10", "203.0.113.20"  # two offices


@pytest.fixture(autouse=True)
def fresh_cache(db):
    cache.clear()
    yield
    cache.clear()


def attempt(username: str, password: str, address: str = X, **headers) -> str:
    """One login from `address`; the page's text (empty after a successful login, which redirects)."""
    response = Client(REMOTE_ADDR=address).post(
        "/login/", {"username": username, "password": password}, **headers
    )
    if response.status_code == 302:
        assert response["Location"] == "/"
        return ""
    assert response.status_code == 200
    return response.content.decode()


def right(user) -> str:
    return "pw-" + user.username


def fail(username: str, times: int, address: str = X) -> None:
    for _ in range(times):
        assert "Please enter a correct username and password" in attempt(username, "wrong", address)


def test_login_with_the_right_password_opens_the_studio(owner):
    assert attempt(owner.username, right(owner)) == ""


def test_repeated_failures_lock_the_username_even_for_the_right_password(owner):
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES)
    page = attempt(owner.username, right(owner))
    assert LOCKED in page and "Try again in 1 minute" in page


def test_wrong_passwords_for_one_user_do_not_lock_out_another_user_at_the_same_address(owner, make_user):
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES)
    # Hammering the locked username goes on being refused, and is not counted against the address.
    for _ in range(settings.STUDIO_LOGIN_ADDRESS_FAILURES + 5):
        assert LOCKED in attempt(owner.username, "wrong")
    victor = make_user("victor")
    assert attempt(victor.username, right(victor)) == ""


def test_a_username_is_locked_from_every_address_once_it_failed_enough_from_several(owner):
    addresses = [f"192.0.2.{n}" for n in range(settings.STUDIO_LOGIN_USER_FAILURES)]
    for address in addresses:  # one failure from each: no address reaches its own limit
        fail(owner.username, 1, address)
    assert LOCKED in attempt(owner.username, right(owner), Y)


def test_an_address_trying_many_usernames_is_locked_for_everyone_there_but_not_elsewhere(owner):
    for n in range(settings.STUDIO_LOGIN_ADDRESS_FAILURES):
        fail(f"guess{n}", 1, X)  # each username fails once: none reaches its own limit
    assert LOCKED in attempt(owner.username, right(owner), X)
    assert attempt(owner.username, right(owner), Y) == ""


def test_an_ipv6_client_cannot_step_round_the_address_lock_within_its_own_64(owner):
    for n in range(settings.STUDIO_LOGIN_ADDRESS_FAILURES):
        fail(f"guess{n}", 1, f"2001:db8:5:7::{n + 1:x}")  # a new address of the same /64 for every guess
    assert LOCKED in attempt(owner.username, right(owner), "2001:db8:5:7:ffff::1")
    assert attempt(owner.username, right(owner), "2001:db8:5:8::1") == ""  # the next /64 is someone else


def test_the_admin_sites_login_counts_and_honours_the_same_locks(make_user):
    make_user("sam", is_staff=True)
    for _ in range(settings.STUDIO_LOGIN_USER_FAILURES):
        response = Client(REMOTE_ADDR=X).post("/admin/login/", {"username": "sam", "password": "wrong"})
        assert response.status_code == 200 and LOCKED not in response.content.decode()
    response = Client(REMOTE_ADDR=Y).post("/admin/login/", {"username": "sam", "password": "pw-sam"})
    assert LOCKED in response.content.decode()
    assert LOCKED in attempt("sam", "pw-sam", Y)


def test_a_right_password_refused_for_another_reason_is_not_counted(owner):
    for _ in range(settings.STUDIO_LOGIN_USER_FAILURES + 1):  # Olivia is not staff: the admin refuses her
        response = Client(REMOTE_ADDR=X).post(
            "/admin/login/", {"username": "olivia", "password": right(owner)}
        )
        assert response.status_code == 200 and LOCKED not in response.content.decode()
    assert attempt(owner.username, right(owner)) == ""


def test_the_right_password_forgets_the_usernames_failures(owner):
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES - 1)
    assert attempt(owner.username, right(owner)) == ""
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES - 1)
    assert attempt(owner.username, right(owner)) == ""


def test_a_login_without_a_password_does_not_forget_the_failures(owner):
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES - 1)
    assert attempt(owner.username, "") != ""  # refused: the field is required
    fail(owner.username, 1)
    assert LOCKED in attempt(owner.username, right(owner))


def test_the_lock_doubles_with_each_failure_past_the_limit_up_to_a_cap():
    limit = settings.STUDIO_LOGIN_USER_FAILURES
    assert [throttle.lock_for(n, limit) for n in range(limit - 1, limit + 6)] == [
        0,
        60,
        120,
        240,
        480,
        900,
        900,
    ]
    assert throttle.lock_for(10**6, limit) == 900
    # Through the cache, as failed logins record them (past the limit only a failure whose lock ran out
    # counts: here the lock is there, so we record directly what such a later failure records).
    for _ in range(limit):
        throttle.record_failure("olivia", X)
    assert 55 <= throttle.locked_seconds("olivia", Y) <= 60
    throttle.record_failure("olivia", X)
    assert 115 <= throttle.locked_seconds("OLIVIA ", Y) <= 120  # usernames count whatever their case


def test_the_lock_survives_a_restart(transactional_db, owner, tmp_path):
    """The count lives in the database cache or Redis, not in the web process: a new process sees the lock."""
    fail(owner.username, settings.STUDIO_LOGIN_USER_FAILURES)
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "testserver",
        "STUDIO_MANIFEST_STATIC": "0",  # the page is rendered without collectstatic
    }
    script = (
        "from django.test import Client; "
        f"page = Client(REMOTE_ADDR='{Y}').post('/login/', {{'username': 'olivia', 'password': 'pw-olivia'}}); "
        "print(page.status_code, 'Too many failed attempts' in page.content.decode())"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["200", "True"]


# --- whose address: X-Forwarded-For only behind a declared proxy ---------------------------------------------


def test_x_forwarded_for_is_ignored_unless_a_proxy_is_declared(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1")
    settings.STUDIO_BEHIND_PROXY = False
    assert client_address(request) == "10.0.0.2"
    settings.STUDIO_BEHIND_PROXY = True
    assert client_address(request) == "192.0.2.1"


def test_behind_a_proxy_the_client_is_the_right_most_forwarded_entry(settings):
    settings.STUDIO_BEHIND_PROXY = True
    spoofed = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, 192.0.2.1")
    assert client_address(spoofed) == "192.0.2.1"  # the client wrote 1.1.1.1; our proxy appended the rest
    garbage = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_address(garbage) == "unknown"
    bare = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2")
    assert client_address(bare) == "10.0.0.2"


def test_without_a_proxy_a_forged_header_does_not_escape_an_address_lock(settings, owner):
    settings.STUDIO_BEHIND_PROXY = False
    for n in range(settings.STUDIO_LOGIN_ADDRESS_FAILURES):
        fail(f"guess{n}", 1, X)
    assert LOCKED in attempt(owner.username, right(owner), X, HTTP_X_FORWARDED_FOR="192.0.2.99")


def test_behind_a_proxy_addresses_are_counted_by_the_forwarded_client(settings, owner):
    settings.STUDIO_BEHIND_PROXY = True
    proxy = "10.0.0.2"  # every request arrives from the proxy
    for n in range(settings.STUDIO_LOGIN_ADDRESS_FAILURES):
        page = attempt(f"guess{n}", "wrong", proxy, HTTP_X_FORWARDED_FOR=X)
        assert LOCKED not in page
    assert LOCKED in attempt(owner.username, right(owner), proxy, HTTP_X_FORWARDED_FOR=X)
    assert attempt(owner.username, right(owner), proxy, HTTP_X_FORWARDED_FOR=Y) == ""
