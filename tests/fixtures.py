"""People with roles, their team, renders and the media folder: the fixtures every test file shares.

Loaded once for the whole suite by `pytest_plugins` in tests/conftest.py; helpers are imported from here
(`from tests.fixtures import make_render`).

People (their usernames are what pages, CSV files and the command line show):
- `owner`: Olivia, a member of `team`, the author of most renders;
- `teammate`: Tom, a member; `reviewer`: Rita; `admin`: Ada;
- `outsider`: Oscar, in no team of theirs.
`team` is Acme. A file that checks how a team's name is escaped overrides `team_name` with a hostile one; `join()`
gives anyone else a role.
"""

from __future__ import annotations

import importlib
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.test import Client
from django.utils.text import slugify
from django_q.models import Schedule

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.gateway.client import GatewayClient
from studio.models import Membership, Rate, Render, Role, State, Team

PROMPT = "A red apple rolls slowly across a wooden table"
PARAMS = {
    "sora2": {"duration_seconds": 5, "size": "1280x720"},
    "sora-2-pro": {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9"},
}


# --- the database as the migrations leave it ----------------------------------------------------------------


SEEDS = [("0002_sweep_schedule", "create_schedule"), ("0004_money", "seed_rate_card")]


@pytest.fixture(autouse=True)
def migrated_seeds(request) -> None:
    """Every database test starts with what the migrations seed: the rate card and the sweep schedule.

    A transactional test ends with a flush that empties every table; pytest-django runs those tests last for
    that reason, but in a shuffled order (`--random-order`, issue 13) a database test can come next.
    """
    # `_django_db_helper` is what pytest-django's db, transactional_db and live_server fixtures stand on.
    if "_django_db_helper" not in request.fixturenames and not request.node.get_closest_marker("django_db"):
        return  # no database for this test
    request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
    if Rate.objects.exists() and Schedule.objects.filter(name="studio-sweep").exists():
        return
    for migration, seed in SEEDS:
        getattr(importlib.import_module(f"studio.migrations.{migration}"), seed)(apps, None)


# --- people ----------------------------------------------------------------------------------------------------


@pytest.fixture
def make_user(django_user_model):
    """Make a user whose password is "pw-" + their username."""

    def make(username: str, **extra):
        return django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)

    return make


def join(team: Team, user, role: str = Role.MEMBER):
    """Give `user` a role in `team`; returns the user."""
    Membership.objects.create(team=team, user=user, role=role)
    return user


def browser_log_in(page, live_server, user) -> None:
    """Log `user` in through the login page in Chromium and wait for the studio page."""
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("button[type=submit]")
    page.wait_for_selector("#id_prompt")


def client_for(user) -> Client:
    """A browser logged in as `user`."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner(make_user):
    return make_user("olivia")


@pytest.fixture
def outsider(make_user):
    return make_user("oscar")


@pytest.fixture
def team_name() -> str:
    """The team's name. Files that check escaping override this fixture with a hostile name."""
    return "Acme"


@pytest.fixture
def team(owner, team_name) -> Team:
    """Acme, Olivia's team: she is a member."""
    acme = Team.objects.create(name=team_name, slug=slugify(team_name))
    join(acme, owner)
    return acme


@pytest.fixture
def teammate(make_user, team):
    """Tom, a member of Olivia's team."""
    return join(team, make_user("tom"))


@pytest.fixture
def reviewer(make_user, team):
    """Rita, who reviews in Olivia's team."""
    return join(team, make_user("rita"), Role.REVIEWER)


@pytest.fixture
def admin(make_user, team):
    """Ada, who administers Olivia's team."""
    return join(team, make_user("ada"), Role.ADMIN)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


# --- renders and their files ---------------------------------------------------------------------------------


def make_render(
    author, state: str = State.COMPLETED, *, team: Team | None = None, model: str = "sora2", **fields
):
    """A render written straight to the database: by default a finished, personal 5 s Sora 2 draft estimated at
    $0.50 ($0.10/s); a Pro one is 8 s 1080p 16:9. `fields` override any column."""
    values = {
        "prompt": PROMPT,
        "params": PARAMS[model],
        "estimated_cost": Decimal("0.5000"),
        "rate_per_second": Decimal("0.100000"),
        **fields,
    }
    return Render.objects.create(user=author, team=team, state=state, model=model, **values)


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """This test's media folder (not created until something lands in it): uploads, clips and posters."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


# --- renders through the lifecycle ------------------------------------------------------------------------------

# One second of 720x720 at the test emulator's 8 fps: about 250 KB, small enough to trickle in a few seconds.
SHORT_PRO = {
    "model": "sora-2-pro",
    "prompt": "A paper boat drifts down a gutter stream",
    "duration_seconds": "1",
    "resolution": "720p",
    "aspect_ratio": "1:1",
}


def submit_render(user, fields: dict, **where) -> Render:
    """A render made through the form and `do_submit_render`, as the page makes it (its submit task is queued)."""
    form = RenderForm(fields)
    assert form.is_valid(), form.errors
    return do_submit_render(user, form.order(), **where)


@pytest.fixture
def api(gateway):
    """A gateway client for whichever emulator the test pointed the studio at (created after it did), as the
    poller would hold one."""
    with GatewayClient() as client:
        yield client
