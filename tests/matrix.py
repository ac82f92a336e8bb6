"""Every named route of the studio, who may use it and what it does, and a world of people to send them.

Shared by the access matrix (tests/test_access_matrix.py: who gets 200, 403, 404 or the login page) and the
request matrix (tests/test_request_matrix.py: CSRF and methods). Routes are discovered from the URL resolver, so
a route added later is covered the moment it exists; a named route that `LEVELS` does not classify fails both.

The world (fixture `world`, loaded through `pytest_plugins` in tests/conftest.py): the people of
tests/fixtures.py in team Acme, plus a former member (an admin removed from it), Sam (staff, in no team) and a
newbie nobody added yet; Olivia's finished shared clip, her finished private one, and a pending render of hers.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

import imageio_ffmpeg
import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from studio.actions.teams import do_remove_member
from studio.models import Membership, Rate, Render, Role, SavedPrompt, State, Team
from tests.fixtures import make_render


class Level(StrEnum):
    ANY = "any signed-in user (lists and forms: each sees only what they may)"
    VIEW = "anyone who can see the render"
    OWN = "the render's author only"
    REVIEW = "a reviewer or admin of the render's team"
    MEMBER = "a member of the team"
    ADMIN = "an admin of the team"
    STAFF = "staff only (site operators)"
    OPERATE = "staff who can see the render (none of the people here: 404 where they cannot see it, else 403)"
    SHARE = "the render's author or an admin of its team (share links outside the team)"
    AUTHOR = (
        "the author of a saved prompt only: to anyone else it does not exist (404), shared with them or not"
    )


class Effect(StrEnum):
    READS = "a page or a file: GET (and HEAD) only, changes nothing"
    ASKS = "a question sent as a form (the live estimate): POST only, changes nothing"
    CHANGES = "changes something: POST only, never GET (a link or a prefetch must not change anything)"


RENDER_LEVELS = {Level.VIEW, Level.OWN, Level.REVIEW, Level.OPERATE, Level.SHARE}
TEAM_LEVELS = {Level.MEMBER, Level.ADMIN}


@dataclass(frozen=True)
class Rule:
    level: Level
    effect: Effect
    owner: str  # which part of the studio the route belongs to (for the skip reason)
    methods: frozenset[str] = field(default_factory=frozenset)  # only when they cannot be read from the view
    data: dict = field(
        default_factory=dict
    )  # what a request needs beyond the common payload ("{team}": Acme)
    page: str = ""  # a CHANGES route whose URL is also this page's: a GET there shows the page


TEAM = {"team": "{team}"}
READS, ASKS, CHANGES = Effect.READS, Effect.ASKS, Effect.CHANGES

# Who may use each named route, and what it does. Every named route must be here: a new route fails the build
# until it is classified. Routes not built yet are skipped until they resolve.
LEVELS: dict[str, Rule] = {
    # the prompt studio
    "studio": Rule(Level.ANY, READS, "studio"),
    "estimate": Rule(Level.ANY, ASKS, "studio"),
    "submit": Rule(Level.ANY, CHANGES, "studio"),
    "poll": Rule(Level.ANY, READS, "studio"),
    "live": Rule(Level.ANY, READS, "studio"),
    "older": Rule(
        Level.ANY, READS, "studio"
    ),  # "My renders" beyond the first page  # every other page's poller: badge, notices, the review queue
    "card": Rule(Level.VIEW, READS, "studio"),
    "video": Rule(Level.VIEW, READS, "studio"),
    "poster": Rule(Level.VIEW, READS, "studio"),
    "cancel": Rule(Level.OWN, CHANGES, "studio"),
    # gallery
    "gallery": Rule(Level.ANY, READS, "gallery"),
    "star": Rule(Level.VIEW, CHANGES, "gallery"),
    "tag_add": Rule(Level.VIEW, CHANGES, "gallery"),
    "tag_remove": Rule(Level.VIEW, CHANGES, "gallery"),
    # review
    "detail": Rule(Level.VIEW, READS, "review"),
    "review": Rule(Level.REVIEW, CHANGES, "review"),
    "comment_add": Rule(Level.VIEW, CHANGES, "review"),
    "private": Rule(Level.OWN, CHANGES, "review"),
    "review_queue": Rule(Level.ANY, READS, "review"),
    # lineage and promotion
    "rerun": Rule(Level.VIEW, CHANGES, "lineage"),  # a new render of whoever asks, billed to them
    "lineage": Rule(Level.VIEW, READS, "lineage"),
    # variants and prompt memory (issue 12)
    "variants": Rule(Level.VIEW, READS, "variants"),  # the contact sheet of the render's group
    "prompts": Rule(Level.ANY, READS, "variants"),  # my recent prompts and the saved ones I may use
    "prompt_save": Rule(Level.ANY, CHANGES, "variants"),  # the studio form's fields (the payload) + a name
    "prompt_delete": Rule(Level.AUTHOR, CHANGES, "variants"),
    # teams
    "teams": Rule(Level.ANY, READS, "teams"),
    "team_create": Rule(Level.ANY, CHANGES, "teams", page="teams"),
    "team_switch": Rule(Level.MEMBER, CHANGES, "teams", data=TEAM),  # the team is in the form, not the URL
    "team": Rule(Level.MEMBER, READS, "teams"),
    "member_add": Rule(Level.ADMIN, CHANGES, "teams"),
    "member_role": Rule(Level.ADMIN, CHANGES, "teams"),
    "member_remove": Rule(Level.ADMIN, CHANGES, "teams"),
    "invitation_create": Rule(Level.ADMIN, CHANGES, "teams"),
    "invitation_revoke": Rule(Level.ADMIN, CHANGES, "teams"),
    # money: the team is in the query string or the form, not the URL
    "spend": Rule(Level.MEMBER, READS, "money", data=TEAM),
    "ledger_csv": Rule(Level.MEMBER, READS, "money", data=TEAM),
    "budgets": Rule(Level.ADMIN, READS, "money", data=TEAM),
    "budget_set": Rule(Level.ADMIN, CHANGES, "money", data={**TEAM, "team_budget": "25"}, page="budgets"),
    "reconcile": Rule(Level.ADMIN, READS, "money", data=TEAM),
    "rates": Rule(Level.ANY, READS, "money"),
    "rate_set": Rule(Level.STAFF, CHANGES, "money", data={"usd_per_second": "0.2"}),
    # operator actions (issue 9): the detail page's staff panel and the alerts banner (views/operator.py)
    "operator_attach": Rule(Level.OPERATE, CHANGES, "operator", data={"task_id": "task-from-the-matrix"}),
    "operator_not_sent": Rule(Level.OPERATE, CHANGES, "operator", data={"resubmit": "0"}),
    "operator_recheck": Rule(Level.OPERATE, CHANGES, "operator"),
    "alert_resolve": Rule(Level.STAFF, CHANGES, "operator"),
    # the review viewer and share links (issue 12): views/viewer.py, views/shares.py
    "viewer": Rule(Level.VIEW, READS, "viewer"),
    "frame": Rule(Level.VIEW, READS, "viewer", data={"t": "0.5"}),
    "share_create": Rule(Level.SHARE, CHANGES, "viewer", data={"days": "7"}),
    "share_revoke": Rule(Level.SHARE, CHANGES, "viewer"),
}
# auth and Django's password pages (tests/test_passwords.py); the gateway's signed init-image URL and an
# invitation's link (no login by design: tests/test_public.py, tests/test_invitations.py); the admin site (its own
# namespace) is skipped as a whole
SKIPPED_NAMES = {
    "login",
    "logout",
    "init_image",
    "invitation",
    "password_change",
    "password_change_done",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    # a share link's page and video (no login by design, behind a signed link id: tests/test_share.py)
    "share",
    "share_video",
}
# for machines, no login by design: a load balancer's probe and Prometheus (tests/test_health.py)
SKIPPED_NAMES |= {"healthz", "metrics"}
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


def unclassified() -> list[str]:
    """Named routes neither matrix knows what to expect of."""
    return sorted(set(ROUTES) - set(LEVELS))


# --- the world ----------------------------------------------------------------------------------------------


@functools.cache
def clip_bytes() -> bytes:
    """A real one-second 160x120 H.264 clip at 24 fps (made once per process): the frame route decodes it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        subprocess.run(
            [
                *(imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin"),
                *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=24:duration=1"),
                *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return path.read_bytes()


POSTER = b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9"


@dataclass
class World:
    team: Team
    users: dict
    renders: dict[str, Render]
    teammate_membership: Membership
    saved_prompt: SavedPrompt  # the owner's, shared with the team: only the owner may delete it
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
        if "invitation_id" in route.kwargs:
            from studio.actions.teams import do_create_invitation

            values["invitation_id"] = do_create_invitation(self.team, Role.MEMBER).pk
        if "rate_id" in route.kwargs:
            values["rate_id"] = Rate.objects.get(model="sora2", rate_key="any").pk
        if "share_id" in route.kwargs:
            from studio.actions.shares import do_create_share

            render = self.renders.get(target, self.renders["shared"])
            values["share_id"] = do_create_share(render, render.user, 7).pk
        if "prompt_id" in route.kwargs:
            values["prompt_id"] = self.saved_prompt.pk
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
            "name": "sunset",  # a new tag (tag_add), a new team (team_create)
            "text": "Looks good",
            "at": "0.5",
            "state": "approved",
            "note": "",
            "private": "1",
            "username": "newbie",
            "role": "reviewer",
            "variants": "1",
        }
        return {**common, **self.additions(rule)}

    def query(self, rule: Rule) -> dict:
        """A GET's query string: a `since` for the poller, and what the rule adds (e.g. the team)."""
        return {"since": (timezone.now() - timedelta(seconds=5)).isoformat(), **self.additions(rule)}

    def additions(self, rule: Rule) -> dict:
        return {k: v.format(team=self.team.pk) for k, v in rule.data.items()}


def finished_render(user, team, prompt: str, **fields) -> Render:
    """A finished clip with its files on disk, a tag ("campaign") and a comment."""
    render = make_render(
        user,
        team=team,
        prompt=prompt,
        billed_cost=Decimal("0.5"),
        finished_at=timezone.now(),
        video_width=160,
        video_height=120,
        video_duration=1.0,
        **fields,
    )
    render.video.save("clip.mp4", ContentFile(clip_bytes()), save=False)
    render.poster.save("poster.jpg", ContentFile(POSTER), save=False)
    render.save()
    render.tags.create(name="campaign", created_by=user)
    render.comments.create(author=user, text="first take", at_seconds=0.2)
    return render


@pytest.fixture
def world(owner, teammate, reviewer, admin, outsider, team, make_user) -> World:
    users = {"owner": owner, "teammate": teammate, "reviewer": reviewer, "admin": admin, "outsider": outsider}
    users["former"] = make_user("fred")
    users["staff"] = make_user("sam", is_staff=True)
    users["operator"] = make_user("opal", is_staff=True)  # staff who is in the team: sees its renders
    make_user("newbie")  # someone for member_add to add
    former = Membership.objects.create(team=team, user=users["former"], role=Role.ADMIN)
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    Membership.objects.create(team=elsewhere, user=outsider, role=Role.ADMIN)
    do_remove_member(former)  # fred was an admin of the team: now he is nobody there
    Membership.objects.create(team=team, user=users["operator"], role=Role.MEMBER)
    Rate.objects.get_or_create(model="sora2", rate_key="any", defaults={"usd_per_second": Decimal("0.1")})
    renders = {
        "shared": finished_render(owner, team, SHARED_PROMPT),
        "private": finished_render(owner, team, PRIVATE_PROMPT, private=True),
        "pending": make_render(owner, State.PENDING, team=team, prompt="PENDING-CLIP waiting to be sent"),
        # the operator actions' render: the studio lost the gateway's answer to its submission
        "unknown": make_render(owner, State.SUBMIT_UNKNOWN, team=team, prompt="UNKNOWN-CLIP sent, or not?"),
    }
    saved = SavedPrompt.objects.create(
        user=owner,
        team=team,
        name="Lighthouse",
        model="sora2",
        prompt=SHARED_PROMPT,
        params={"duration_seconds": 5},
    )
    return World(team, users, renders, Membership.objects.get(team=team, user=teammate), saved)
