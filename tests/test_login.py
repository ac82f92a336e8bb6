"""Login: it works, and repeated failures lock the username and the address out."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from studio.views.auth import MAX_FAILURES


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_login_with_the_right_password_opens_the_studio(client, owner):
    response = client.post("/login/", {"username": owner.username, "password": "pw-" + owner.username})
    assert response.status_code == 302 and response["Location"] == "/"


def test_repeated_failures_lock_the_account_even_for_the_right_password(client, owner):
    for _ in range(MAX_FAILURES):
        response = client.post("/login/", {"username": owner.username, "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/login/", {"username": owner.username, "password": "pw-" + owner.username})
    assert response.status_code == 200
    assert "Too many failed attempts" in response.content.decode()


def test_failures_from_one_address_lock_it_out_for_every_username(client, owner, make_user):
    for i in range(MAX_FAILURES):
        client.post("/login/", {"username": f"guess{i}", "password": "wrong"})
    other = make_user("victor")
    response = client.post("/login/", {"username": other.username, "password": "pw-victor"})
    assert "Too many failed attempts" in response.content.decode()
