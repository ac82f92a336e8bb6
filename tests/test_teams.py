"""Teams: creating one, managing members and roles with each permission level, the last admin, the active-team
switcher, the navigation, the `team` and `render --team` commands, and team names shown escaped."""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import HTMX
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from studio import access
from studio.actions.teams import (
    TeamChangeRefused,
    do_create_invitation,
    do_create_team,
    do_remove_member,
    do_switch_team,
)
from studio.models import Membership, Profile, Render, Role, State, Team
from tests.fixtures import client_for, join, make_render

PROMPT = "A red apple rolls slowly across a wooden table"
EVIL = '<script>alert(1)</script> <img src=x onerror=alert(2)> hx-get="/x"'


# --- people ----------------------------------------------------------------------------------------------------


@pytest.fixture
def team(owner) -> Team:
    """Crew, which Olivia (the owner) is not in: these tests add her (`owner_in_crew`) or show what she cannot do
    outside it. Ada administers it, Rita reviews, Tom is a member (tests/fixtures.py)."""
    return Team.objects.create(name="Crew", slug="crew")


@pytest.fixture
def owner_in_crew(owner, team):
    return join(team, owner)


@pytest.fixture
def admin_client(admin):
    return client_for(admin)


def membership_of(team, user) -> Membership:
    return Membership.objects.get(team=team, user=user)


def sora2(**fields) -> dict:
    return {"model": "sora2", "prompt": PROMPT, "duration_seconds": "5", "size": "1280x720", **fields}


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def roles(team) -> dict[str, str]:
    return {m.user.username: m.role for m in team.memberships.select_related("user")}


# --- the teams page and creating a team -----------------------------------------------------------------------


def test_teams_page_lists_my_teams_with_my_role_and_nobody_elses(owner_client, owner_in_crew, make_user):
    other = Team.objects.create(name="Elsewhere", slug="elsewhere")
    join(other, make_user("eve"), Role.ADMIN)
    html = owner_client.get(reverse("teams")).content.decode()
    assert 'href="/teams/{}/"'.format(Team.objects.get(slug="crew").pk) in html
    assert re.search(r"Crew</a>.*?<span class=\"badge role role-member\">Member</span>", html, re.S)
    assert "Elsewhere" not in html


def test_a_user_without_a_team_is_told_their_renders_are_personal(owner_client):
    html = owner_client.get(reverse("teams")).content.decode()
    assert "You are not in a team yet" in html
    assert 'id="team-switch"' not in html  # nothing to switch between


def test_creating_a_team_makes_me_its_admin(owner_client, owner):
    response = owner_client.post(reverse("team_create"), {"name": "  Night   Shift "})
    team = Team.objects.get()
    assert (team.name, team.slug) == ("Night Shift", "night-shift")
    assert response.status_code == 302
    assert response["Location"] == reverse("team", args=[team.pk])
    assert roles(team) == {"olivia": Role.ADMIN}


def test_team_slugs_are_unique_and_never_empty(owner, outsider):
    first = do_create_team(owner, "Crew")
    second = do_create_team(outsider, "crew!")
    nameless = do_create_team(owner, "🎬🎬")
    assert (first.slug, second.slug, nameless.slug) == ("crew", "crew-2", "team")


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "tab\u200bhidden"])
def test_a_bad_team_name_is_refused_on_the_field(owner_client, name):
    response = owner_client.post(reverse("team_create"), {"name": name})
    assert response.status_code == 400
    assert re.search(r'id="err-name" role="alert">[^<]+</div>', response.content.decode())
    assert not Team.objects.exists()


# --- the team page: members see, admins manage ----------------------------------------------------------------


@pytest.mark.parametrize("person", ["owner_in_crew", "teammate", "reviewer", "admin"])
def test_every_member_sees_the_members_and_their_roles(person, request, team, admin, reviewer, teammate):
    html = client_for(request.getfixturevalue(person)).get(reverse("team", args=[team.pk])).content.decode()
    for name in ("ada", "rita", "tom"):
        assert f'data-username="{name}"' in html
    assert 'data-username="ada" data-role="admin"' in html
    assert 'data-username="rita" data-role="reviewer"' in html


@pytest.mark.parametrize("person", ["teammate", "reviewer"])
def test_only_admins_see_the_member_controls(person, request, team, admin_client):
    member_html = client_for(request.getfixturevalue(person)).get(reverse("team", args=[team.pk])).content
    admin_html = admin_client.get(reverse("team", args=[team.pk])).content
    for control in (b'id="member-form"', b"/role/", b"/remove/"):
        assert control not in member_html
        assert control in admin_html


def test_an_outsider_cannot_tell_the_team_exists(outsider_client, team, admin):
    assert outsider_client.get(reverse("team", args=[team.pk])).status_code == 404


def test_admin_adds_a_member_by_username_in_one_fragment(admin_client, team, outsider):
    response = admin_client.post(
        reverse("member_add", args=[team.pk]), {"username": "oscar", "role": "reviewer"}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith('<section id="team-members"')
    assert 'data-username="oscar" data-role="reviewer"' in html
    assert re.search(r'<form id="member-form"[^>]*hx-swap-oob="true"', html)  # a fresh, empty form
    assert re.search(r'name="username" id="id_username"[^>]*value=""', html)
    assert "oscar joined Crew as Reviewer." in html  # the toast
    assert roles(team)["oscar"] == Role.REVIEWER


def test_a_username_matches_regardless_of_case(admin_client, team, outsider):
    admin_client.post(reverse("member_add", args=[team.pk]), {"username": "OSCAR", "role": "member"})
    assert roles(team)["oscar"] == Role.MEMBER


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody", "There is no user called “nobody”."),
        ("tom", "tom is already in this team."),
        ("", "This field is required."),
    ],
)
def test_adding_an_unknown_or_present_user_says_so_on_the_field(
    admin_client, team, teammate, username, message
):
    url = reverse("member_add", args=[team.pk])
    fragment = admin_client.post(url, {"username": username, "role": "member"}, **HTMX)
    assert fragment.status_code == 200
    assert fragment["HX-Retarget"] == "#member-form"
    assert fragment["HX-Reswap"] == "outerHTML"
    assert (
        f'<div class="field-error" id="err-username" role="alert">{message}</div>'
        in fragment.content.decode()
    )
    page = admin_client.post(url, {"username": username, "role": "member"})
    assert page.status_code == 400
    assert message in page.content.decode()
    assert team.memberships.count() == 2  # ada and tom


def test_adding_with_an_unknown_role_is_refused(admin_client, team, outsider):
    response = admin_client.post(
        reverse("member_add", args=[team.pk]), {"username": "oscar", "role": "owner"}
    )
    assert response.status_code == 400
    assert "oscar" not in roles(team)


def test_admin_changes_a_role_in_one_fragment(admin_client, team, teammate):
    member = membership_of(team, teammate)
    response = admin_client.post(
        reverse("member_role", args=[team.pk, member.pk]), {"role": "reviewer"}, **HTMX
    )
    html = response.content.decode()
    assert html.startswith('<section id="team-members"')
    assert 'data-username="tom" data-role="reviewer"' in html
    assert "tom is now Reviewer." in html
    assert roles(team)["tom"] == Role.REVIEWER


def test_a_role_change_without_htmx_redirects_back_to_the_team(admin_client, team, teammate):
    member = membership_of(team, teammate)
    response = admin_client.post(reverse("member_role", args=[team.pk, member.pk]), {"role": "admin"})
    assert response.status_code == 302
    assert response["Location"] == reverse("team", args=[team.pk])
    assert roles(team)["tom"] == Role.ADMIN


def test_an_unknown_role_changes_nothing_and_says_so(admin_client, team, teammate):
    member = membership_of(team, teammate)
    response = admin_client.post(reverse("member_role", args=[team.pk, member.pk]), {"role": "god"}, **HTMX)
    assert "Pick a role: member, reviewer or admin." in response.content.decode()
    assert roles(team)["tom"] == Role.MEMBER


def test_admin_removes_a_member_in_one_fragment(admin_client, team, teammate):
    member = membership_of(team, teammate)
    response = admin_client.post(reverse("member_remove", args=[team.pk, member.pk]), **HTMX)
    html = response.content.decode()
    assert html.startswith('<section id="team-members"')
    assert 'data-username="tom"' not in html
    assert "tom was removed from Crew." in html
    assert "tom" not in roles(team)


@pytest.mark.parametrize("person", ["teammate", "reviewer", "owner_in_crew"])
@pytest.mark.parametrize("name", ["member_add", "member_role", "member_remove"])
def test_members_and_reviewers_cannot_manage_members(person, name, request, team, admin, teammate, outsider):
    target = membership_of(team, admin)
    args = [team.pk] if name == "member_add" else [team.pk, target.pk]
    data = {"username": "oscar", "role": "member"}
    client = client_for(request.getfixturevalue(person))
    assert client.post(reverse(name, args=args), data).status_code == 403
    assert client.post(reverse(name, args=args), data, **HTMX).status_code == 403
    assert roles(team)["ada"] == Role.ADMIN
    assert "oscar" not in roles(team)


@pytest.mark.parametrize("name", ["team", "member_add", "member_role", "member_remove"])
def test_an_outsider_cannot_manage_members_either(name, outsider_client, team, admin):
    target = membership_of(team, admin)
    args = [team.pk] if name in ("team", "member_add") else [team.pk, target.pk]
    method = outsider_client.get if name == "team" else outsider_client.post
    assert method(reverse(name, args=args), {"username": "oscar", "role": "admin"}).status_code == 404
    assert roles(team) == {"ada": Role.ADMIN}


def test_a_membership_of_another_team_is_404_under_this_team(admin_client, team, make_user):
    other = Team.objects.create(name="Elsewhere", slug="elsewhere")
    theirs = membership_of(other, join(other, make_user("eve"), Role.ADMIN))
    for name in ("member_role", "member_remove"):
        response = admin_client.post(reverse(name, args=[team.pk, theirs.pk]), {"role": "member"})
        assert response.status_code == 404
    assert roles(other) == {"eve": Role.ADMIN}


# --- the last admin ---------------------------------------------------------------------------------------------


def test_the_last_admin_cannot_step_down(admin_client, team, admin):
    mine = membership_of(team, admin)
    response = admin_client.post(reverse("member_role", args=[team.pk, mine.pk]), {"role": "member"}, **HTMX)
    html = response.content.decode()
    assert "ada is the team&#x27;s only admin: make someone else an admin first." in html
    assert 'data-username="ada" data-role="admin"' in html  # the select shows the role that stayed
    assert roles(team)["ada"] == Role.ADMIN


def test_the_last_admin_cannot_be_removed_or_leave(admin_client, team, admin):
    mine = membership_of(team, admin)
    response = admin_client.post(reverse("member_remove", args=[team.pk, mine.pk]), **HTMX)
    assert "ada is the team&#x27;s only admin" in response.content.decode()
    assert roles(team) == {"ada": Role.ADMIN}


def test_the_last_admins_controls_are_disabled_with_a_reason(admin_client, team, admin):
    html = admin_client.get(reverse("team", args=[team.pk])).content.decode()
    row = re.search(r'<tr id="member-\d+" data-username="ada".*?</tr>', html, re.S).group(0)
    assert row.count(" disabled title=") == 2


def test_with_two_admins_one_can_step_down_and_then_the_other_is_the_last(
    admin_client, team, admin, teammate
):
    tom = membership_of(team, teammate)
    admin_client.post(reverse("member_role", args=[team.pk, tom.pk]), {"role": "admin"})
    mine = membership_of(team, admin)
    admin_client.post(reverse("member_role", args=[team.pk, mine.pk]), {"role": "reviewer"})
    assert roles(team) == {"ada": Role.REVIEWER, "tom": Role.ADMIN}
    with pytest.raises(TeamChangeRefused, match="tom is the team's only admin"):
        do_remove_member(tom)


def test_an_admin_who_leaves_goes_back_to_their_teams(admin_client, team, admin, teammate):
    Membership.objects.filter(team=team, user=teammate).update(role=Role.ADMIN)
    mine = membership_of(team, admin)
    fragment = admin_client.post(reverse("member_remove", args=[team.pk, mine.pk]), **HTMX)
    assert fragment["HX-Redirect"] == reverse("teams")
    assert roles(team) == {"tom": Role.ADMIN}
    assert admin_client.get(reverse("team", args=[team.pk])).status_code == 404


# --- removal takes effect at once -------------------------------------------------------------------------------


def test_a_removed_member_loses_the_teams_renders_and_files_at_once(
    admin_client, team, owner_in_crew, teammate
):
    render = make_render(owner_in_crew, team=team)
    render.video.save("clip.mp4", io.BytesIO(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64), save=True)
    tom = client_for(teammate)
    assert tom.get(reverse("card", args=[render.pk])).status_code == 200
    assert tom.get(reverse("video", args=[render.pk])).status_code == 200
    admin_client.post(reverse("member_remove", args=[team.pk, membership_of(team, teammate).pk]))
    assert tom.get(reverse("card", args=[render.pk])).status_code == 404
    assert tom.get(reverse("video", args=[render.pk])).status_code == 404
    assert tom.get(reverse("team", args=[team.pk])).status_code == 404


# --- the active team ---------------------------------------------------------------------------------------------


def test_switching_team_stores_it_and_new_renders_go_there(owner_client, owner_in_crew, team):
    other = Team.objects.create(name="Night", slug="night")
    join(other, owner_in_crew)
    response = owner_client.post(reverse("team_switch"), {"team": str(other.pk), "next": "/teams/"})
    assert response.status_code == 302
    assert response["Location"] == "/teams/"
    assert Profile.objects.get(user=owner_in_crew).active_team == other
    owner_client.post(reverse("submit"), sora2())
    assert Render.objects.get().team == other


def test_the_switcher_shows_the_active_team_selected(owner_client, owner_in_crew, team):
    other = Team.objects.create(name="Night", slug="night")
    join(other, owner_in_crew)
    do_switch_team(owner_in_crew, other)
    html = owner_client.get(reverse("studio")).content.decode()
    switcher = re.search(r'<select name="team" id="team-switch-select">.*?</select>', html, re.S).group(0)
    assert f'<option value="{other.pk}" selected>Night</option>' in switcher
    assert f'<option value="{team.pk}">Crew</option>' in switcher
    assert '<option value="">Personal</option>' in switcher


def test_switching_to_personal_makes_new_renders_personal(owner_client, owner_in_crew, team):
    do_switch_team(owner_in_crew, team)
    owner_client.post(reverse("team_switch"), {"team": ""})
    assert Profile.objects.get(user=owner_in_crew).active_team is None
    assert (
        '<option value="" selected>Personal</option>' in owner_client.get(reverse("studio")).content.decode()
    )
    owner_client.post(reverse("submit"), sora2())
    assert Render.objects.get().team is None


def test_switching_through_htmx_refreshes_the_page(owner_client, owner_in_crew, team):
    response = owner_client.post(reverse("team_switch"), {"team": str(team.pk)}, **HTMX)
    assert response.status_code == 204
    assert response["HX-Refresh"] == "true"
    assert "New renders go to Crew." in owner_client.get(reverse("studio")).content.decode()  # the toast


@pytest.mark.parametrize("value", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "theirs"])
def test_switching_to_a_team_i_am_not_in_is_404(owner_client, owner_in_crew, team, make_user, value):
    do_switch_team(owner_in_crew, team)
    if value == "theirs":
        theirs = do_create_team(make_user("eve"), "Elsewhere")
        value = str(theirs.pk)
    assert owner_client.post(reverse("team_switch"), {"team": value}).status_code == 404
    assert Profile.objects.get(user=owner_in_crew).active_team == team


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", ""])
def test_switching_never_redirects_off_site(owner_client, owner_in_crew, team, next_url):
    response = owner_client.post(reverse("team_switch"), {"team": str(team.pk), "next": next_url})
    assert response["Location"] == reverse("studio")


def test_a_team_i_was_removed_from_is_no_longer_where_renders_go(owner_client, owner_in_crew, team, admin):
    do_switch_team(owner_in_crew, team)
    do_remove_member(membership_of(team, owner_in_crew))
    owner_client.post(reverse("submit"), sora2())
    assert Render.objects.get().team is None
    assert access.active_team(owner_in_crew) is None


# --- navigation ---------------------------------------------------------------------------------------------------


def nav(html: str) -> str:
    return re.search(r'<nav class="main-nav".*?</nav>', html, re.S).group(0)


def test_members_see_studio_gallery_spend_and_teams_but_no_review_link(owner_client, owner_in_crew):
    links = re.findall(r'<a href="([^"]+)"', nav(owner_client.get(reverse("studio")).content.decode()))
    assert links == ["/", "/gallery/", "/spend/", "/teams/"]


@pytest.mark.parametrize("person", ["reviewer", "admin"])
def test_reviewers_see_to_review_once_with_a_badge_of_what_waits(
    person, request, team, owner_in_crew, make_user
):
    user = request.getfixturevalue(person)
    second = do_create_team(make_user("eve"), "Second")
    join(second, user, Role.REVIEWER)  # reviewing in two teams still shows one link
    make_render(owner_in_crew, team=team)
    make_render(owner_in_crew, team=team)
    make_render(owner_in_crew, team=team, state=State.RUNNING)  # not finished: nothing to review yet
    html = nav(client_for(user).get(reverse("studio")).content.decode())
    assert html.count('href="/review/"') == 1
    assert re.search(r'data-testid="to-review-count"[^>]*>2</span>', html)


def test_no_badge_when_nothing_waits(team, reviewer):
    html = nav(client_for(reviewer).get(reverse("studio")).content.decode())
    assert 'href="/review/"' in html
    assert "to-review-count" not in html


def test_the_current_page_is_marked_in_the_nav(owner_client, owner_in_crew):
    html = nav(owner_client.get(reverse("teams")).content.decode())
    assert '<a href="/teams/" aria-current="page">Teams</a>' in html
    assert '<a href="/" aria-current' not in html


def test_anonymous_visitors_see_no_nav(client):
    assert 'class="main-nav"' not in client.get(reverse("login")).content.decode()


# --- escaping -------------------------------------------------------------------------------------------------------


def assert_escaped(html: str) -> None:
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert 'hx-get="/x"' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_hostile_team_name_is_shown_escaped_everywhere(owner_client, owner, make_user):
    owner_client.post(reverse("team_create"), {"name": EVIL})
    team = Team.objects.get()
    assert team.name == EVIL
    eve = make_user("eve")
    join(team, eve)
    for url in (reverse("teams"), reverse("team", args=[team.pk]), reverse("studio")):
        assert_escaped(owner_client.get(url).content.decode())  # pages, the switcher, the creation toast
    eve_membership = membership_of(team, eve)
    fragment = owner_client.post(reverse("member_remove", args=[team.pk, eve_membership.pk]), **HTMX)
    assert_escaped(fragment.content.decode())  # the toast
    switched = owner_client.post(reverse("team_switch"), {"team": str(team.pk)}, follow=True)
    assert_escaped(switched.content.decode())


def test_the_remove_confirmation_escapes_names_inside_the_attribute(owner_client, owner, make_user):
    team = do_create_team(owner, 'Crew" hx-get="/x')
    join(team, make_user("eve"))
    html = owner_client.get(reverse("team", args=[team.pk])).content.decode()
    assert 'hx-confirm="Remove eve from Crew&quot; hx-get=&quot;/x?' in html


# --- the command line -------------------------------------------------------------------------------------------------


def test_team_commands_create_add_change_remove_and_list(owner, outsider, make_user):
    make_user("eve")
    slug = run("team", "create", "Night Shift", "--admin", "olivia").strip()
    assert slug == "night-shift"
    run("team", "add", slug, "oscar", "--role", "reviewer")
    run("team", "add", slug, "eve")
    run("team", "role", slug, "eve", "admin")
    run("team", "remove", slug, "oscar")
    team = Team.objects.get(slug=slug)
    assert roles(team) == {"olivia": Role.ADMIN, "eve": Role.ADMIN}
    assert run("team", "list").strip() == "night-shift              Night Shift: eve (admin), olivia (admin)"
    assert json.loads(run("team", "list", "--json")) == [
        {
            "slug": "night-shift",
            "name": "Night Shift",
            "members": [{"username": "eve", "role": "admin"}, {"username": "olivia", "role": "admin"}],
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "Crew", "--admin", "nobody"), "No user named 'nobody'."),
        (("create", "   ", "--admin", "olivia"), "A team name has 1 to 80 characters."),
        (("add", "nowhere", "oscar"), "No team 'nowhere'"),
        (("add", "crew", "nobody"), "No user named 'nobody'."),
        (("add", "crew", "ada"), "ada is already in Crew."),
        (("role", "crew", "oscar", "admin"), "oscar is not in crew."),
        (("role", "crew", "ada", "member"), "ada is the team's only admin"),
        (("remove", "crew", "ada"), "ada is the team's only admin"),
    ],
)
def test_team_commands_refuse_with_a_clear_message(args, message, team, admin, outsider):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("team", *args)
    assert roles(team) == {"ada": Role.ADMIN}


def test_render_into_a_team_from_the_command_line(owner_in_crew, team):
    [line] = run("render", "--user", "olivia", "--team", "crew", PROMPT).split()
    assert Render.objects.get(pk=line).team == team
    assert Profile.objects.filter(user=owner_in_crew).first() is None  # the web's active team is untouched


def test_render_into_a_team_without_being_in_it_fails(owner, team, admin):
    for slug in ("crew", "nowhere"):
        with pytest.raises(CommandError, match=f"olivia is not in a team called '{slug}'."):
            run("render", "--user", "olivia", "--team", slug, PROMPT)
    assert not Render.objects.exists()


def test_render_without_team_goes_to_the_active_team(owner_in_crew, team):
    do_switch_team(owner_in_crew, team)
    [line] = run("render", "--user", "olivia", PROMPT).split()
    assert Render.objects.get(pk=line).team == team


# --- query counts ----------------------------------------------------------------------------------------------


def add_people(team, how_many: int, make_user) -> None:
    for number in range(how_many):
        join(team, make_user(f"person{number}"), Role.REVIEWER if number % 3 else Role.MEMBER)


@pytest.mark.parametrize("people", [2, 30])
def test_the_team_page_costs_the_same_queries_whatever_its_size(people, admin_client, team, make_user, admin):
    add_people(team, people, make_user)
    for _ in range(people):
        do_create_invitation(team, Role.MEMBER)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("team", args=[team.pk]))
    assert response.content.decode().count('<tr id="member-') == people + 1
    assert response.content.decode().count('<tr id="invitation-') == people
    # 1 the session; 2 the user; 3 my membership with its team (access); 4 the pending invitations (I am an
    # admin); 5 every member with their user, in one join; then the context processors, lazily, in the order
    # base.html reads them: 6 my memberships with their teams (access.viewer: the teams I review in and my
    # active team come from these rows); 7 how many renders wait for my review; 8 the team I picked (none: my
    # oldest team is the active one); 9 open gateway alerts (the banner, below the header).
    assert len(queries) == 9, "\n".join(q["sql"] for q in queries)


@pytest.mark.parametrize("teams", [1, 12])
def test_the_teams_page_costs_the_same_queries_whatever_the_number_of_teams(teams, owner_client, owner):
    for number in range(teams):
        do_create_team(owner, f"Team {number}")
    with CaptureQueriesContext(connection) as queries:
        response = owner_client.get(reverse("teams"))
    assert response.content.decode().count('<tr id="team-') == teams
    # 1 the session; 2 the user; 3 my memberships with their teams (access.viewer: the table, and as on every
    # page the "To review" link and the switcher read the same rows); then, lazily, in the order base.html reads
    # them: 4 how many renders wait for my review; 5 the team I picked (none: my oldest team is the active one);
    # 6 open gateway alerts (the banner, below the header).
    assert len(queries) == 6, "\n".join(q["sql"] for q in queries)
