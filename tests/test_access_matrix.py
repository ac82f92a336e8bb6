"""The access matrix: every URL that takes a render or a team, for every kind of person, GET and POST.

People: the owner (member of team Acme, author of the shared render and of a private one), a teammate, a reviewer
and an admin of Acme, an outsider (admin of another team), a former member (removed from Acme), and anonymous.
Routes, their levels and the world live in tests/matrix.py (shared with the request matrix).

- Routes are discovered from the URL resolver, so a route added later is covered the moment it exists; a named
  route that LEVELS does not classify fails `test_every_route_is_classified`.
- Routes other helpers have not built yet are classified anyway and skipped, saying so, until they resolve.
- An outsider or a former member gets 404 everywhere (video and poster files included); a private render is 404
  for everyone but its author; a member without the role gets 403; anonymous visitors go to the login page (htmx
  requests: 204 + HX-Redirect there).
"""

from __future__ import annotations

import pytest
from conftest import HTMX
from django.db import transaction
from django.urls import reverse

from tests.matrix import (
    LEVELS,
    PRIVATE_PROMPT,
    RENDER_LEVELS,
    ROUTES,
    SHARED_PROMPT,
    TEAM_LEVELS,
    Level,
    World,
    scope,
    unclassified,
)

PEOPLE = ["owner", "teammate", "reviewer", "admin", "outsider", "former", "anonymous"]
OK, LOGIN = "2xx/3xx", "login"


def cases():
    """(name, method, target) for each classified route; the routes not built yet as one skipped case each."""
    for name, rule in LEVELS.items():
        route = ROUTES.get(name)
        if route is None:
            reason = f"route {name!r} ({rule.owner}) is not built yet: classified as {rule.level.name}"
            yield pytest.param(name, "-", "-", id=f"{name}-unbuilt", marks=pytest.mark.skip(reason=reason))
            continue
        methods = route.methods or rule.methods or frozenset({"GET", "POST"})
        targets = ["shared", "private"] if scope(rule) == "render" else ["-"]
        for method in sorted(methods):
            for target in targets:
                yield pytest.param(name, method, target, id=f"{name}-{method}-{target}")


# --- what each person gets ------------------------------------------------------------------------------------


def expected(level: Level, person: str, target: str):
    """The matrix itself: OK, 403, 404 or LOGIN."""
    if person == "anonymous":
        return LOGIN
    if level == Level.ANY:
        return OK
    if level == Level.STAFF:
        return 403
    if level == Level.AUTHOR:
        return OK if person == "owner" else 404
    if person in ("outsider", "former"):
        return 404
    if level in TEAM_LEVELS:
        return OK if level == Level.MEMBER or person == "admin" else 403
    if target == "private" and person != "owner":
        return 404
    if level == Level.VIEW:
        return OK
    if level == Level.OPERATE:
        return 403
    if level == Level.OWN:
        return OK if person == "owner" else 403
    if level == Level.SHARE:
        return OK if person in ("owner", "admin") else 403
    return OK if person in ("reviewer", "admin") and target == "shared" else 403  # REVIEW


def body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def outcome_problem(response, want, htmx: bool) -> str | None:
    """What is wrong with this response, if anything."""
    status = response.status_code
    if want == LOGIN:
        header = "HX-Redirect" if htmx else "Location"
        wanted_status = 204 if htmx else 302
        if status != wanted_status or not response.get(header, "").startswith("/login/?next="):
            return f"got {status} {header}={response.get(header)!r}"
        return None
    if want == OK:
        sent_to = response.get("Location", "") + response.get("HX-Redirect", "")
        if not 200 <= status < 400 or sent_to.startswith("/login/"):
            return f"got {status} {sent_to} {body(response)[:200]!r}"
        return None
    return None if status == want else f"got {status} {body(response)[:200]!r}"


# --- the tests ------------------------------------------------------------------------------------------------


def test_every_route_is_classified():
    assert not unclassified(), f"classify these routes in LEVELS (tests/matrix.py): {unclassified()}"


@pytest.mark.parametrize("name", sorted(set(ROUTES) & set(LEVELS)))
def test_each_route_is_classified_by_what_its_url_names(name):
    """A route with a render id is classified by render access, one with a team id by team access."""
    route, rule = ROUTES[name], LEVELS[name]
    if "render_id" in route.kwargs:
        assert rule.level in RENDER_LEVELS, name
    elif "team_id" in route.kwargs:
        assert rule.level in TEAM_LEVELS, name
    elif "prompt_id" in route.kwargs:
        assert rule.level == Level.AUTHOR, name
    elif rule.level in TEAM_LEVELS:
        assert "team" in rule.data, f"{name}: a team-level route without a team id must name it in Rule.data"
    else:
        assert rule.level in (Level.ANY, Level.STAFF), name
    assert route.methods or rule.methods, f"say which methods {name!r} allows: Rule(methods=...)"


@pytest.mark.parametrize("via", ["page", "htmx"])
@pytest.mark.parametrize(("name", "method", "target"), list(cases()))
def test_access_matrix(name, method, target, via, world):
    """Each person in turn, each request rolled back after (a savepoint), so no one sees another's changes."""
    rule, route = LEVELS[name], ROUTES[name]
    url = reverse(name, kwargs=world.kwargs(route, target))
    clients = {person: world.client(person) for person in PEOPLE}  # logged in outside the savepoints
    extra = HTMX if via == "htmx" else {}
    wrong = []
    for person in PEOPLE:
        want = expected(rule.level, person, target)
        with transaction.atomic():
            if method == "GET":
                response = clients[person].get(url, world.query(rule), **extra)
            else:
                response = clients[person].post(url, world.payload(rule), **extra)
            transaction.set_rollback(True)
        problem = outcome_problem(response, want, via == "htmx")
        if problem is None and want == OK and rule.level == Level.ANY:
            problem = shows_what_they_may_not_see(body(response), person, world)
        if problem:
            wrong.append(f"{person}: expected {want}, {problem}")
    assert not wrong, f"{method} {url} ({name}, {rule.level.name}, {via}):\n  " + "\n  ".join(wrong)


def shows_what_they_may_not_see(html: str, person: str, world: World) -> str | None:
    """Lists and forms answer everyone, but never with a render the person may not see."""
    secrets = []
    if person != "owner":
        secrets += [PRIVATE_PROMPT, str(world.renders["private"].pk)]
    if person in ("outsider", "former"):
        secrets += [SHARED_PROMPT, str(world.renders["shared"].pk)]
    shown = [secret for secret in secrets if secret in html]
    return f"the response shows {shown}" if shown else None


@pytest.mark.parametrize("param", ["remix", "promote"])
@pytest.mark.parametrize("person", PEOPLE[:-1])
def test_the_studio_form_prefilled_from_a_render_shows_only_what_the_person_may_see(param, person, world):
    """`/?remix=<id>` and `/?promote=<id>` take a render id in the query string: the same rules apply."""
    for target in ("shared", "private"):
        render = world.renders[target]
        response = world.client(person).get(reverse("studio"), {param: str(render.pk)})
        if person == "owner":
            assert response.status_code == 200
            continue
        assert response.status_code in (200, 404)
        assert PRIVATE_PROMPT not in body(response)
        if person in ("outsider", "former"):
            assert SHARED_PROMPT not in body(response)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, r in LEVELS.items()
        if r.level == Level.VIEW and n in ROUTES and "GET" in (ROUTES[n].methods or ())
    ],
)
def test_a_member_removed_by_an_admin_gets_404_on_their_next_request(name, world):
    tom, url = world.client("teammate"), reverse(name, kwargs=world.kwargs(ROUTES[name], "shared"))
    query = world.query(LEVELS[name])  # what the route needs beyond its URL (the frame route's moment)
    assert tom.get(url, query).status_code == 200
    removed = world.client("admin").post(
        reverse("member_remove", args=[world.team.pk, world.teammate_membership.pk])
    )
    assert removed.status_code == 302
    assert tom.get(url, query).status_code == 404
