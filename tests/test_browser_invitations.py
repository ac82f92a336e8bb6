"""An invited person joins a team in Chromium through the link, without the admin site; a used or expired link
says so in words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from studio import access
from studio.actions.teams import do_create_invitation
from studio.models import Invitation, Membership, Role
from tests.fixtures import browser_log_in as log_in

pytestmark = pytest.mark.browser


def test_an_admin_invites_and_a_new_person_joins_through_the_link(page, browser, live_server, admin, team):
    log_in(page, live_server, admin)
    page.goto(f"{live_server.url}/teams/{team.pk}/")
    page.select_option("#id_invite_role", "reviewer")
    page.click("button:has-text('Create invitation link')")
    link = page.locator("[data-testid=invitation-link]")
    expect(link).to_have_count(1)  # htmx swapped the list in, no reload
    url = link.input_value()
    assert url.startswith(f"{live_server.url}/invite/")

    stranger = browser.new_context()  # someone else's browser: no session, no cookies
    newcomer = stranger.new_page()
    newcomer.goto(url)
    expect(newcomer.locator("h1")).to_have_text(f"Join {team.name}")
    newcomer.fill("#id_username", "nina")
    newcomer.fill("#id_password1", "violet-harbour-87")
    newcomer.fill("#id_password2", "violet-harbour-87")
    newcomer.click(f"button:has-text('Join {team.name}')")

    newcomer.wait_for_selector("#id_prompt")  # in the studio, logged in
    expect(newcomer.locator("#toasts")).to_contain_text(f"Welcome to {team.name}: you joined as reviewer")
    expect(newcomer.locator(".account .who")).to_have_text("nina")
    expect(newcomer.locator("#team-switch-select option:checked")).to_have_text(team.name)
    assert Membership.objects.get(team=team, user__username="nina").role == Role.REVIEWER

    # The link worked once: opened again (here, in the admin's browser) it says so.
    page.goto(url)
    expect(page.locator("[data-testid=invitation-problem]")).to_contain_text("already been used")
    page.goto(f"{live_server.url}/teams/{team.pk}/")
    expect(page.locator("[data-testid=invitation-link]")).to_have_count(0)
    expect(page.locator("#team-members")).to_contain_text("nina")
    stranger.close()


def test_an_expired_link_says_so_and_offers_no_form(page, live_server, team):
    invitation = do_create_invitation(team, Role.MEMBER)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = page.goto(f"{live_server.url}{access.invitation_path(invitation)}")
    assert response is not None and response.status == 410
    expect(page.locator("h1")).to_have_text("This invitation cannot be used")
    expect(page.locator("[data-testid=invitation-problem]")).to_contain_text("This invitation has expired")
    expect(page.locator("#id_password1")).to_have_count(0)
