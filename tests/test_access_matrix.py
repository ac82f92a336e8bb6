"""The access matrix: every URL that takes a render or a team, for every kind of person, GET and POST.

People: the owner (member of team Crew, author of the shared render and of a private one), a teammate, a reviewer
and an admin of Crew, an outsider (admin of another team), a former member (removed from Crew), and anonymous.

- Routes are discovered from the URL resolver, so a route added later is covered the moment it exists; a named
  route that LEVELS does not classify fails `test_every_route_is_classified`.
- Routes other helpers have not built yet are classified anyway and skipped, saying so, until they resolve.
- An outsider or a former member gets 404 everywhere (video and poster files included); a private render is 404
  for everyone but its author; a member without the role gets 403; anonymous visitors go to the login page (htmx
  requests: 204 + HX-Redirect there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

import pytest
from conftest import HTMX
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from studio.actions.teams import do_remove_member
from studio.models import Membership, Render, Role, State, Team


class Level(StrEnum):
    ANY = "any signed-in user (lists and forms: each sees only what they may)"
    VIEW = "anyone who can see the render"
    OWN = "the render's author only"
    REVIEW = "a reviewer or admin of the render's team"
    MEMBER = "a member of the team"
    ADMIN = "an admin of the team"
    STAFF = "staff only (site operators; none of the people here)"
    OPERATE = "staff who can see the render (none of the people here: 404 where they cannot see it, else 403)"


RENDER_LEVELS = {Level.VIEW, Level.OWN, Level.REVIEW, Level.OPERATE}
TEAM_LEVELS = {Level.MEMBER, Level.ADMIN}


@dataclass(frozen=True)
class Rule:
    level: Level
    owner: str  # which part of the studio the route belongs to (for the skip reason)
    methods: frozenset[str] = field(default_factory=frozenset)  # only when they cannot be read from the view
    data: dict = field(
        default_factory=dict
    )  # what a request needs beyond the common payload ("{team}": Crew)


CREW = {"team": "{team}"}

# Which level each named route needs. Every named route must be here: a new route fails the build until it is
# classified. Routes not built yet are skipped until they resolve.
LEVELS: dict[str, Rule] = {
    # the prompt studio (issue 3)
    "studio": Rule(Level.ANY, "studio"),
    "estimate": Rule(Level.ANY, "studio"),
    "submit": Rule(Level.ANY, "studio"),
    "poll": Rule(Level.ANY, "studio"),
    "card": Rule(Level.VIEW, "studio"),
    "video": Rule(Level.VIEW, "studio"),
    "poster": Rule(Level.VIEW, "studio"),
    "cancel": Rule(Level.OWN, "studio"),
    # gallery
    "gallery": Rule(Level.ANY, "gallery"),
    "star": Rule(Level.VIEW, "gallery"),
    "tag_add": Rule(Level.VIEW, "gallery"),
    "tag_remove": Rule(Level.VIEW, "gallery"),
    # review
    "detail": Rule(Level.VIEW, "review"),
    "review": Rule(Level.REVIEW, "review"),
    "comment_add": Rule(Level.VIEW, "review"),
    "private": Rule(Level.OWN, "review"),
    "review_queue": Rule(Level.ANY, "review"),
    # lineage and promotion
    "rerun": Rule(Level.VIEW, "lineage"),  # a new render of whoever asks, billed to them (views/lineage.py)
    "lineage": Rule(Level.VIEW, "lineage"),
    # teams
    "teams": Rule(Level.ANY, "teams"),
    "team_create": Rule(Level.ANY, "teams"),
    "team_switch": Rule(Level.MEMBER, "teams", data=CREW),  # the team is in the form, not the URL
    "team": Rule(Level.MEMBER, "teams"),
    "member_add": Rule(Level.ADMIN, "teams"),
    "member_role": Rule(Level.ADMIN, "teams"),
    "member_remove": Rule(Level.ADMIN, "teams"),
    # money (issue 5): the team is in the query string or the form, not the URL
    "spend": Rule(Level.MEMBER, "money", data=CREW),
    "ledger_csv": Rule(Level.MEMBER, "money", data=CREW),
    "budgets": Rule(Level.ADMIN, "money", data=CREW),
    "budget_set": Rule(Level.ADMIN, "money", data=CREW),
    "reconcile": Rule(Level.ADMIN, "money", data=CREW),
    "rates": Rule(Level.ANY, "money"),
    "rate_set": Rule(Level.STAFF, "money", data={"usd_per_second": "0.1"}),
    # operator actions (issue 9): the detail page's staff panel and the alerts banner (views/operator.py)
    "operator_attach": Rule(Level.OPERATE, "operator", data={"task_id": "task-from-the-matrix"}),
    "operator_not_sent": Rule(Level.OPERATE, "operator", data={"resubmit": "0"}),
    "operator_recheck": Rule(Level.OPERATE, "operator"),
    "alert_resolve": Rule(Level.STAFF, "operator"),
}
# auth; the gateway's signed init-image URL (no login by design: tests/test_public.py); the admin site (its own
# namespace) is skipped as a whole
SKIPPED_NAMES = {"login", "logout", "init_image"}
PEOPLE = ["owner", "teammate", "reviewer", "admin", "outsider", "former", "anonymous"]
OK, LOGIN = "2xx/3xx", "login"
SHARED_PROMPT = "SHARED-CLIP a lighthouse at dusk"
PRIVATE_PROMPT = "PRIVATE-CLIP a secret storyboard"


# --- discovering the routes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    kwargs: tuple[str, ...]
    methods: frozenset[str] | None  # None: the view does not say


def view_methods(view) -> frozenset[str] | None:
    """GET/POST a view accepts, read from `require_http_methods` (or a class-based view), if it says."""
    if hasattr(view, "view_class"):
        return frozenset(m.upper() for m in ("get", "post") if hasattr(view.view_class, m))
    while view is not None:
        code = getattr(view, "__code__", None)
        for name, cell in zip(code.co_freevars if code else (), view.__closure__ or (), strict=False):
            if name == "request_method_list":
                return frozenset(m for m in cell.cell_contents if m in ("GET", "POST"))
        view = getattr(view, "__wrapped__", None)
    return None


def discover() -> dict[str, Route]:
    """Every named route the studio serves, but auth and the admin site."""
    routes: dict[str, Route] = {}

    def walk(patterns) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if "admin" not in (pattern.namespace, pattern.app_name):
                    walk(pattern.url_patterns)
            elif pattern.name and pattern.name not in SKIPPED_NAMES and pattern.name not in routes:
                kwargs = tuple(pattern.pattern.regex.groupindex)
                routes[pattern.name] = Route(pattern.name, kwargs, view_methods(pattern.callback))

    walk(get_resolver().url_patterns)
    return routes


ROUTES = discover()


def scope(rule: Rule) -> str:
    return "render" if rule.level in RENDER_LEVELS else "team" if rule.level in TEAM_LEVELS else "none"


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


# --- the world ----------------------------------------------------------------------------------------------


CLIP = b"\x00\x00\x00\x18ftypmp42" + bytes(200)  # the file server does not parse it
POSTER = b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9"


@dataclass
class World:
    team: Team
    users: dict
    renders: dict[str, Render]
    teammate_membership: Membership
    clients: dict = field(default_factory=dict)

    def client(self, person: str) -> Client:
        if person not in self.clients:
            client = Client()
            if person != "anonymous":
                client.force_login(self.users[person])
            self.clients[person] = client
        return self.clients[person]

    def kwargs(self, route: Route, target: str) -> dict:
        values = {
            "render_id": self.renders.get(target, self.renders["shared"]).pk,
            "team_id": self.team.pk,
            "membership_id": self.teammate_membership.pk,
            "name": "campaign",  # tag_remove: a tag both renders carry
        }
        if "alert_id" in route.kwargs:
            from studio.models import GatewayAlert

            values["alert_id"] = GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, "The wallet is empty.").pk
        if "rate_id" in route.kwargs:
            from studio.models import Rate  # issue 5's rate card

            line, _ = Rate.objects.get_or_create(
                model="sora2", rate_key="any", defaults={"usd_per_second": Decimal("0.1")}
            )
            values["rate_id"] = line.pk
        unknown = set(route.kwargs) - set(values)
        assert not unknown, (
            f"the matrix cannot fill {sorted(unknown)} of {route.name!r}: add it to World.kwargs"
        )
        return {k: values[k] for k in route.kwargs}

    def payload(self, rule: Rule) -> dict:
        """One POST body every view finds what it needs in: the studio form, a tag, a comment, a review, a role."""
        common = {
            "model": "sora2",
            "prompt": "A red apple rolls slowly across a wooden table",
            "duration_seconds": "5",
            "size": "1280x720",
            "since": (timezone.now() - timedelta(seconds=5)).isoformat(),
            "name": "campaign",
            "text": "Looks good",
            "at": "0.5",
            "state": "approved",
            "note": "",
            "private": "1",
            "username": "newbie",
            "role": "reviewer",
        }
        return {**common, **self.additions(rule)}

    def query(self, rule: Rule) -> dict:
        """A GET's query string: a `since` for the poller, and what the rule adds (e.g. the team)."""
        return {"since": (timezone.now() - timedelta(seconds=5)).isoformat(), **self.additions(rule)}

    def additions(self, rule: Rule) -> dict:
        return {k: v.format(team=self.team.pk) for k, v in rule.data.items()}


def finished_render(user, team, prompt: str, **fields) -> Render:
    render = Render.objects.create(
        user=user,
        team=team,
        model="sora2",
        prompt=prompt,
        params={"duration_seconds": 5, "size": "1280x720"},
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
        billed_cost=Decimal("0.5"),
        state=State.COMPLETED,
        finished_at=timezone.now(),
        video_width=160,
        video_height=120,
        video_duration=1.0,
        **fields,
    )
    render.video.save("clip.mp4", ContentFile(CLIP), save=False)
    render.poster.save("poster.jpg", ContentFile(POSTER), save=False)
    render.save()
    render.tags.create(name="campaign", created_by=user)
    render.comments.create(author=user, text="first take", at_seconds=0.2)
    return render


@pytest.fixture
def world(make_user) -> World:
    names = {"owner": "olivia", "teammate": "tom", "reviewer": "rita", "admin": "ada", "outsider": "oscar"}
    users = {person: make_user(name) for person, name in names.items()}
    users["former"] = make_user("fred")
    make_user("newbie")  # someone for member_add to add
    crew = Team.objects.create(name="Crew", slug="crew")
    roles = {"owner": Role.MEMBER, "teammate": Role.MEMBER, "reviewer": Role.REVIEWER, "admin": Role.ADMIN}
    memberships = {p: Membership.objects.create(team=crew, user=users[p], role=r) for p, r in roles.items()}
    former = Membership.objects.create(team=crew, user=users["former"], role=Role.ADMIN)
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    Membership.objects.create(team=elsewhere, user=users["outsider"], role=Role.ADMIN)
    do_remove_member(former)  # fred was an admin of Crew: now he is nobody there
    renders = {
        "shared": finished_render(users["owner"], crew, SHARED_PROMPT),
        "private": finished_render(users["owner"], crew, PRIVATE_PROMPT, private=True),
    }
    return World(crew, users, renders, memberships["teammate"])


# --- what each person gets ------------------------------------------------------------------------------------


def expected(level: Level, person: str, target: str):
    """The matrix itself: OK, 403, 404 or LOGIN."""
    if person == "anonymous":
        return LOGIN
    if level == Level.ANY:
        return OK
    if level == Level.STAFF:
        return 403
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
    unclassified = set(ROUTES) - set(LEVELS)
    assert not unclassified, (
        f"classify these routes in LEVELS (tests/test_access_matrix.py): {sorted(unclassified)}"
    )


@pytest.mark.parametrize("name", sorted(set(ROUTES) & set(LEVELS)))
def test_each_route_is_classified_by_what_its_url_names(name):
    """A route with a render id is classified by render access, one with a team id by team access."""
    route, rule = ROUTES[name], LEVELS[name]
    if "render_id" in route.kwargs:
        assert rule.level in RENDER_LEVELS, name
    elif "team_id" in route.kwargs:
        assert rule.level in TEAM_LEVELS, name
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
    assert tom.get(url).status_code == 200
    removed = world.client("admin").post(
        reverse("member_remove", args=[world.team.pk, world.teammate_membership.pk])
    )
    assert removed.status_code == 302
    assert tom.get(url).status_code == 404
