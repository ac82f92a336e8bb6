"""Invitations: a team admin makes a link (a role, maybe a username or an e-mail); the link works once, expires,
can be revoked, and is the only way in without an account. Every unusable link is a page that says why.

People (tests/fixtures.py): Ada administers Acme, Olivia and Tom are members, Oscar is in no team of theirs.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from conftest import HTMX
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.template.defaultfilters import urlencode
from django.urls import reverse
from django.utils import timezone

from studio import access
from studio.actions.teams import (
    InvitationUnusable,
    do_accept_invitation,
    do_create_invitation,
    do_join_by_invitation,
)
from studio.models import Invitation, Membership, Profile, Role
from tests.fixtures import client_for

User = get_user_model()
STRONG = "violet-harbour-87"


def link(invitation: Invitation) -> str:
    return access.invitation_path(invitation)


def join_as(client, invitation: Invitation, username: str, password: str = STRONG, **extra):
    data = {"username": username, "password1": password, "password2": password, **extra}
    return client.post(link(invitation), data)


@pytest.fixture
def admin_client(admin):
    return client_for(admin)


# --- making and listing them -------------------------------------------------------------------------------------


def test_an_admin_creates_an_invitation_and_its_link_is_listed_on_the_team_page(admin_client, team, admin):
    response = admin_client.post(reverse("invitation_create", args=[team.pk]), {"role": "reviewer"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(team=team)
    assert (invitation.role, invitation.created_by, invitation.status) == ("reviewer", admin, "pending")
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    page = admin_client.get(reverse("team", args=[team.pk])).content.decode()
    assert f'value="http://testserver{link(invitation)}"' in page
    assert "anyone with the link" in page


def test_an_invitation_by_htmx_answers_with_the_list_holding_its_link(admin_client, team):
    response = admin_client.post(
        reverse("invitation_create", args=[team.pk]),
        {"role": "member", "email": "nina@example.com"},
        **HTMX,
    )
    invitation = Invitation.objects.get(team=team)
    html = response.content.decode()
    assert response.status_code == 200 and html.startswith('<section id="team-invitations"')
    assert link(invitation) in html and "nina@example.com" in html


def test_the_expiry_is_a_setting(admin_client, team, settings):
    settings.STUDIO_INVITATION_DAYS = 2
    admin_client.post(reverse("invitation_create", args=[team.pk]), {"role": "member"})
    left = Invitation.objects.get(team=team).expires_at - timezone.now()
    assert timedelta(days=1, hours=23) < left <= timedelta(days=2)


def test_a_bad_invitation_form_says_what_is_wrong_on_its_fields(admin_client, team, owner):
    url = reverse("invitation_create", args=[team.pk])
    response = admin_client.post(url, {"role": "boss", "email": "not-an-address", "username": owner.username})
    html = response.content.decode()
    assert response.status_code == 400
    assert "Select a valid choice" in html and "Enter a valid email address" in html
    assert f"{owner.username} is already in this team" in html
    assert not Invitation.objects.exists()
    htmx = admin_client.post(url, {"role": "member", "username": "bad name!"}, **HTMX)
    assert htmx.status_code == 200 and 'id="err-invite-username"' in htmx.content.decode()
    assert "Enter a valid username" in htmx.content.decode()
    assert not Invitation.objects.exists()


def test_members_do_not_see_the_invitations_and_cannot_make_them(owner, team):
    do_create_invitation(team, Role.ADMIN)
    olivia = client_for(owner)
    page = olivia.get(reverse("team", args=[team.pk])).content.decode()
    assert "invitation" not in page.lower()
    assert olivia.post(reverse("invitation_create", args=[team.pk]), {"role": "admin"}).status_code == 403
    assert Invitation.objects.count() == 1


def test_revoking_an_invitation_stops_its_link(admin_client, team):
    invitation = do_create_invitation(team, Role.MEMBER)
    url = reverse("invitation_revoke", args=[team.pk, invitation.pk])
    response = admin_client.post(url, **HTMX)
    assert response.status_code == 200 and link(invitation) not in response.content.decode()
    page = client_for_anonymous().get(link(invitation))
    assert page.status_code == 410 and "withdrawn" in page.content.decode()
    again = admin_client.post(url)  # twice is the same as once
    assert again.status_code == 302
    assert Invitation.objects.get().revoked_at is not None


def test_a_used_invitation_cannot_be_revoked(admin_client, team, outsider):
    invitation = do_create_invitation(team, Role.MEMBER)
    do_accept_invitation(invitation, outsider)
    admin_client.post(reverse("invitation_revoke", args=[team.pk, invitation.pk]))
    invitation.refresh_from_db()
    assert invitation.revoked_at is None and invitation.status == "accepted"


def client_for_anonymous():
    from django.test import Client

    return Client()


# --- a new person joins ------------------------------------------------------------------------------------------


def test_a_new_person_picks_a_username_and_password_and_lands_in_the_studio_in_the_team(team):
    invitation = do_create_invitation(team, Role.REVIEWER)
    browser = client_for_anonymous()
    page = browser.get(link(invitation))
    assert page.status_code == 200 and "Join Acme" in page.content.decode()
    response = join_as(browser, invitation, "nina", email="nina@example.com")
    assert response.status_code == 302 and response["Location"] == "/"
    nina = User.objects.get(username="nina")
    assert nina.check_password(STRONG) and nina.email == "nina@example.com"
    assert Membership.objects.get(team=team, user=nina).role == Role.REVIEWER
    assert Profile.objects.get(user=nina).active_team == team
    studio = browser.get("/").content.decode()  # logged in, rendering into Acme
    assert "nina" in studio and "Welcome to Acme" in studio
    invitation.refresh_from_db()
    assert invitation.accepted_by == nina and invitation.status == "accepted"


@pytest.mark.parametrize(
    ("password", "again", "says"),
    [
        ("password", "password", "This password is too common"),
        ("x7", "x7", "This password is too short"),
        ("48213907651", "48213907651", "This password is entirely numeric"),
        (STRONG, STRONG + "!", "The two password fields didn"),
    ],
)
def test_passwords_go_through_djangos_validators(team, password, again, says):
    invitation = do_create_invitation(team, Role.MEMBER)
    response = client_for_anonymous().post(
        link(invitation), {"username": "nina", "password1": password, "password2": again}
    )
    assert response.status_code == 400 and says in response.content.decode()
    assert not User.objects.filter(username="nina").exists()
    assert Invitation.objects.get().status == "pending"


def test_a_username_taken_in_any_case_is_refused(team, owner):
    invitation = do_create_invitation(team, Role.MEMBER)
    response = join_as(client_for_anonymous(), invitation, owner.username.upper())
    assert response.status_code == 400 and "already exists" in response.content.decode()
    assert Invitation.objects.get().status == "pending"


def test_an_invitation_naming_a_username_gives_that_username_whatever_is_sent(team):
    invitation = do_create_invitation(team, Role.MEMBER, username="nina")
    browser = client_for_anonymous()
    assert 'value="nina"' in browser.get(link(invitation)).content.decode()
    assert join_as(browser, invitation, "mallory").status_code == 302
    assert (
        User.objects.filter(username="nina").exists() and not User.objects.filter(username="mallory").exists()
    )


def test_an_invitation_naming_an_e_mail_gives_the_account_that_address(team):
    invitation = do_create_invitation(team, Role.MEMBER, email="nina@example.com")
    join_as(client_for_anonymous(), invitation, "nina", email="other@example.com")
    assert User.objects.get(username="nina").email == "nina@example.com"


def test_an_invitation_naming_an_existing_account_asks_its_owner_to_log_in(team, outsider):
    invitation = do_create_invitation(team, Role.MEMBER, username=outsider.username)
    page = client_for_anonymous().get(link(invitation)).content.decode()
    assert f"Log in as {outsider.username}" in page and "password1" not in page


# --- someone with an account accepts -------------------------------------------------------------------------


def test_a_logged_in_user_accepts_and_joins(team, outsider):
    invitation = do_create_invitation(team, Role.ADMIN)
    oscar = client_for(outsider)
    assert f"Join as {outsider.username}" in oscar.get(link(invitation)).content.decode()
    response = oscar.post(link(invitation))
    assert response.status_code == 302 and response["Location"] == "/"
    assert Membership.objects.get(team=team, user=outsider).role == Role.ADMIN


def test_the_login_page_brings_an_existing_user_back_to_the_invitation(team, outsider):
    invitation = do_create_invitation(team, Role.MEMBER)
    page = client_for_anonymous().get(link(invitation)).content.decode()
    assert f"/login/?next={urlencode(link(invitation))}" in page
    browser = client_for_anonymous()
    response = browser.post(
        "/login/", {"username": outsider.username, "password": "pw-oscar", "next": link(invitation)}
    )
    assert response["Location"] == link(invitation)


def test_an_invitation_for_someone_else_is_refused_with_a_reason(team, outsider):
    by_name = do_create_invitation(team, Role.MEMBER, username="nina")
    response = client_for(outsider).post(link(by_name))
    assert response.status_code == 403 and "This invitation is for nina" in response.content.decode()
    by_mail = do_create_invitation(team, Role.MEMBER, email="nina@example.com")
    response = client_for(outsider).get(link(by_mail))
    assert response.status_code == 403 and "sent to nina@example.com" in response.content.decode()
    assert not Membership.objects.filter(user=outsider).exists()
    assert all(i.status == "pending" for i in Invitation.objects.all())


def test_a_member_already_in_the_team_is_told_so_and_the_invitation_stays_unused(team, owner):
    invitation = do_create_invitation(team, Role.ADMIN)
    response = client_for(owner).post(link(invitation))
    assert response.status_code == 409 and "already in Acme" in response.content.decode()
    assert Membership.objects.get(team=team, user=owner).role == Role.MEMBER
    assert Invitation.objects.get().status == "pending"


# --- links that cannot be used --------------------------------------------------------------------------------


def test_a_used_link_says_so(team, outsider):
    invitation = do_create_invitation(team, Role.MEMBER)
    assert join_as(client_for_anonymous(), invitation, "nina").status_code == 302
    for browser in (client_for_anonymous(), client_for(outsider)):
        for response in (browser.get(link(invitation)), join_as(browser, invitation, "mallory")):
            assert response.status_code == 410
            assert "already been used" in response.content.decode()
    assert not User.objects.filter(username="mallory").exists()
    assert not Membership.objects.filter(user=outsider).exists()


def test_an_expired_link_says_so(team):
    invitation = do_create_invitation(team, Role.MEMBER)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = join_as(client_for_anonymous(), invitation, "nina")
    assert response.status_code == 410 and "has expired" in response.content.decode()
    assert not User.objects.filter(username="nina").exists()


@pytest.mark.parametrize("tamper", ["flip", "cut", "other-id", "garbage"])
def test_a_tampered_link_is_a_clear_404(team, tamper):
    invitation = do_create_invitation(team, Role.ADMIN)
    token = access.invitation_token(invitation)
    value, signature = token.split(":")
    tampered = {
        "flip": f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "cut": value,
        "other-id": f"{'0' * 32}:{signature}",
        "garbage": "%00%ff..",
    }[tamper]
    for method in ("get", "post"):
        response = getattr(client_for_anonymous(), method)(f"/invite/{tampered}/")
        assert response.status_code == 404
        assert "This invitation link is not valid" in response.content.decode()
    assert Invitation.objects.get().status == "pending"


def test_a_well_signed_link_to_an_invitation_that_is_gone_is_a_404(team):
    invitation = do_create_invitation(team, Role.MEMBER)
    path = link(invitation)
    invitation.delete()
    response = client_for_anonymous().get(path)
    assert response.status_code == 404 and "not valid" in response.content.decode()


# --- used once, even at the same moment -----------------------------------------------------------------------


def test_an_invitation_read_before_someone_else_used_it_is_still_refused(team, outsider, make_user):
    """The conditional update, not the check before it, makes it single use: a copy read while it was pending
    (the second of two concurrent accepts) is refused."""
    invitation = do_create_invitation(team, Role.MEMBER)
    stale = Invitation.objects.get(pk=invitation.pk)
    do_accept_invitation(invitation, outsider)
    with pytest.raises(InvitationUnusable, match="already been used"):
        do_accept_invitation(stale, make_user("tina"))
    with pytest.raises(InvitationUnusable, match="already been used"):
        do_join_by_invitation(stale, "nina", STRONG)
    assert not User.objects.filter(username="nina").exists()
    assert (
        list(Membership.objects.filter(team=team).values_list("user__username", flat=True).order_by("pk"))[-1]
        == outsider.username
    )
    assert not Membership.objects.filter(user__username="tina").exists()


def test_two_people_accepting_at_the_same_moment_make_one_member(transactional_db, team):
    invitation = do_create_invitation(team, Role.MEMBER)
    copies = [Invitation.objects.get(pk=invitation.pk) for _ in range(2)]  # both read it pending
    start, outcomes = threading.Barrier(2), []

    def accept(copy: Invitation, name: str) -> None:
        try:
            start.wait()
            do_join_by_invitation(copy, name, STRONG)
            outcomes.append("joined")
        except InvitationUnusable as refused:
            outcomes.append(str(refused))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=accept, args=(c, n)) for c, n in zip(copies, ("nina", "niko"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == sorted(["joined", UNUSED_AGAIN]), outcomes
    assert User.objects.filter(username__in=["nina", "niko"]).count() == 1
    assert Membership.objects.filter(team=team).count() == 2  # Olivia and the one who got in


UNUSED_AGAIN = "This invitation has already been used. Ask the team's admin for a new one."


# --- the command line ---------------------------------------------------------------------------------------------


def test_team_invite_prints_a_link_that_works(team, settings):
    out = io.StringIO()
    call_command("team", "invite", team.slug, "--role", "reviewer", "--email", "nina@example.com", stdout=out)
    url = out.getvalue().strip()
    invitation = Invitation.objects.get()
    assert url == f"http://127.0.0.1:8000{link(invitation)}"
    assert (invitation.role, invitation.email, invitation.created_by) == (
        "reviewer",
        "nina@example.com",
        None,
    )
    assert join_as(client_for_anonymous(), invitation, "nina").status_code == 302
    settings.STUDIO_BASE_URL = "https://studio.example.com"
    out = io.StringIO()
    call_command("team", "invite", team.slug, "--username", "niko", "--days", "1", stdout=out)
    assert out.getvalue().startswith("https://studio.example.com/invite/")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--email", "nope"], "--email: Enter a valid email address."),
        (["--username", "olivia"], "--username: olivia is already in this team."),
        (["--days", "0"], "--days is a number of days from 1 to 365."),
    ],
)
def test_team_invite_refuses_what_the_page_refuses(team, args, says):
    with pytest.raises(CommandError, match=says):
        call_command("team", "invite", team.slug, *args, stdout=io.StringIO())
    assert not Invitation.objects.exists()


def test_team_invite_needs_a_known_team(db):
    with pytest.raises(CommandError, match="No team 'nowhere'"):
        call_command("team", "invite", "nowhere", stdout=io.StringIO())
