"""The request matrix: CSRF and methods, for every route, checked by what the database holds afterwards.

Routes, who may use them and what they do (reads, asks, changes) are classified in tests/matrix.py, beside the
access matrix; a new route fails `test_every_route_says_what_it_does` until it is classified, and is covered
by every test below the day it is added.

- A POST without a CSRF token (a cross-site form: the browser has the cookie, the form has no token) is 403 on
  every route, page or htmx, and changes nothing: no render, no hold, no review, no membership, no task queued.
- A route that changes something answers GET with 405 and changes nothing (a link, a prefetch or an image tag
  must never act), even with the whole form in the query string.
- Pages and questions change nothing when asked the right way, and answer the wrong method with 405.
- Each route that changes something does change it when sent properly (a token, someone allowed): the control
  that keeps the refusals above from passing for want of a right payload or person.
"""

from __future__ import annotations

import pytest
from conftest import HTMX
from django.apps import apps
from django.test import Client
from django.urls import reverse
from django.utils.crypto import get_random_string

from tests.matrix import LEVELS, ROUTES, Effect, Level, Rule, World, unclassified

# Who sends each request: someone the route allows, so that a refusal can only be about CSRF or the method.
SENDER = {
    Level.ANY: "owner",
    Level.VIEW: "owner",
    Level.OWN: "owner",
    Level.REVIEW: "reviewer",
    Level.MEMBER: "owner",
    Level.ADMIN: "admin",
    Level.STAFF: "staff",
    Level.OPERATE: "operator",  # staff in the team: they see its renders
    Level.SHARE: "owner",
    Level.AUTHOR: "owner",  # the saved prompt is the owner's
}
TARGET = {
    "cancel": "pending",  # cancelling a finished clip changes nothing: cancel Olivia's pending render
    # the operator actions apply to a render whose submission outcome is unknown
    "operator_attach": "unknown",
    "operator_not_sent": "unknown",
    "operator_recheck": "unknown",
}
# Routes whose change needs the gateway to answer (the matrix has none): the refusals above still cover them.
NEEDS_THE_GATEWAY = {"operator_recheck"}
STALE = "This form was stale or its security token was missing."


def built(effects: set[Effect]) -> list[str]:
    return sorted(name for name, rule in LEVELS.items() if name in ROUTES and rule.effect in effects)


ALL = built(set(Effect))


def snapshot() -> dict[str, list[dict]]:
    """Every row the studio, its users and its ORM task queue hold, as plain values (sessions aside)."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for label in ("studio", "auth", "django_q")
        for model in apps.get_app_config(label).get_models()
    }


def request(world: World, name: str) -> tuple[Rule, str, dict]:
    rule = LEVELS[name]
    url = reverse(name, kwargs=world.kwargs(ROUTES[name], TARGET.get(name, "shared")))
    return rule, url, world.payload(rule)


def sender(world: World, rule: Rule, *, csrf_checks: bool = False) -> Client:
    """A logged-in browser of someone the route allows; with `csrf_checks`, one that holds a CSRF cookie."""
    client = Client(enforce_csrf_checks=csrf_checks)
    client.force_login(world.users[SENDER[rule.level]])  # before any snapshot: logging in writes last_login
    if csrf_checks:
        client.cookies["csrftoken"] = get_random_string(32)
    return client


def body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def test_every_route_says_what_it_does():
    assert not unclassified(), f"classify these routes in LEVELS (tests/matrix.py): {unclassified()}"
    for name, rule in LEVELS.items():
        assert isinstance(rule.effect, Effect), name
        if rule.page and name in ROUTES:  # "a GET at this URL is that page": the URLs must be one
            assert rule.effect == Effect.CHANGES and LEVELS[rule.page].effect == Effect.READS, name
            assert reverse(name) == reverse(rule.page), name


@pytest.mark.parametrize("name", ALL)
def test_a_post_without_a_csrf_token_is_403_and_changes_nothing(name, world):
    rule, url, data = request(world, name)
    client = sender(world, rule, csrf_checks=True)
    before = snapshot()

    page = client.post(url, data)
    fragment = client.post(url, data, **HTMX)

    assert (page.status_code, fragment.status_code) == (403, 403)
    assert STALE in body(page) and body(fragment).startswith(STALE)
    assert snapshot() == before


@pytest.mark.parametrize("name", built({Effect.CHANGES}))
def test_a_get_to_a_route_that_changes_something_is_405_and_changes_nothing(name, world):
    rule, url, data = request(world, name)
    client = sender(world, rule)
    before = snapshot()

    response = client.get(url, data)  # the whole form in the query string: a link that would act

    if rule.page:  # the same URL is a page: a GET there shows it
        assert response.status_code == 200
        assert response.resolver_match.url_name in (name, rule.page)
    else:
        assert response.status_code == 405
        assert response["Allow"] == "POST"
    assert snapshot() == before


@pytest.mark.parametrize("name", built({Effect.READS, Effect.ASKS}))
def test_pages_and_questions_change_nothing_and_refuse_the_other_method(name, world):
    rule, url, data = request(world, name)
    client = sender(world, rule)
    shared_url = {other.page for other in LEVELS.values() if other.page}
    before = snapshot()

    if rule.effect == Effect.READS:
        answer = client.get(url, world.query(rule))
        other = None if name in shared_url else client.post(url, data)  # a form posts there too
    else:
        answer = client.post(url, data)
        other = client.get(url, data)

    assert 200 <= answer.status_code < 400, body(answer)[:300]
    assert other is None or other.status_code == 405
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(set(built({Effect.CHANGES})) - NEEDS_THE_GATEWAY))
def test_a_route_that_changes_something_changes_it_when_posted_properly(name, world):
    rule, url, data = request(world, name)
    client = sender(world, rule)
    before = snapshot()

    response = client.post(url, data)

    assert 200 <= response.status_code < 400, body(response)[:300]
    assert snapshot() != before, (
        f"{name} changed nothing: is it really Effect.CHANGES, or is the payload wrong?"
    )
