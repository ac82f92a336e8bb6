"""A budget in the browser: submit until the team's monthly budget refuses, and read why."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from studio.models import Budget, LedgerEntry, Membership, Render, Role, Team

pytestmark = pytest.mark.browser


def test_submitting_until_the_budget_refuses_says_how_much_is_left(logged_in, owner):
    team = Team.objects.create(name="Launch crew", slug="launch-crew")
    Membership.objects.create(team=team, user=owner, role=Role.ADMIN)
    Budget.objects.create(team=team, monthly_usd=Decimal("1.20"))
    page = logged_in
    page.reload()  # the switcher now shows the team, and new renders go to it

    page.fill("#id_prompt", "A lantern festival over a river, drone shot")
    for expected in (1, 2):  # $0.50 each: two fit in $1.20
        page.click("button:has-text('Render')")
        expect(page.locator(".card")).to_have_count(expected)
    page.click("button:has-text('Render')")

    refusal = page.locator("#studio-form .errors")
    expect(refusal).to_contain_text("only $0.20 is left of team Launch crew's $1.20 monthly budget")
    expect(page.locator(".card")).to_have_count(2)
    assert Render.objects.count() == 2
    assert LedgerEntry.objects.filter(kind="hold").count() == 2
