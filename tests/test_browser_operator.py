"""Renders off the happy path in Debian's Chromium: what their cards say, and an operator acting from the pages.

Screenshots go to $STUDIO_SCREENSHOTS when it is set (to look at them), else to the test's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from studio.catalog import MODELS, SORA2, SORA2_PRO
from studio.models import GatewayAlert, GatewayCapability, Membership, Render, Role, State, Team
from tests.fixtures import browser_log_in as log_in
from tests.test_operator_pages import make_render, stalled, unknown

pytestmark = pytest.mark.browser


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_each_card_says_what_became_of_its_render(page, live_server, owner, shots):
    GatewayCapability.objects.create(
        base_url=settings.BYTESPIKE_BASE_URL, protocol=str(MODELS[SORA2].protocol), can_cancel=False
    )
    note = (
        "The gateway refused the cancel 3 times (last: busy), so it runs to the end and is billed as usual."
    )
    cards = {
        "stalled": stalled(owner),
        "unknown": unknown(owner),
        "refused": make_render(
            owner, state=State.RUNNING, gateway_task_id="t-2", progress=55, cancel_requested_at=timezone.now()
        ),
        "cannot": make_render(owner, state=State.RUNNING, gateway_task_id="t-1", progress=30),
        "pro": make_render(owner, model=SORA2_PRO, state=State.RUNNING, gateway_task_id="t-3", progress=10),
    }
    Render.objects.filter(pk=cards["refused"].pk).update(cancel_note=note, cancel_attempts=3)
    page.set_viewport_size({"width": 1400, "height": 1100})
    log_in(page, live_server, owner)

    card = {name: page.locator(f"#render-{render.pk}") for name, render in cards.items()}
    expect(card["cannot"]).to_contain_text("This gateway cannot cancel renders")
    expect(card["cannot"].locator("button.cancel")).to_have_count(0)
    expect(card["pro"].locator("button.cancel")).to_be_visible()
    expect(card["refused"].locator("[data-testid=cancel-note]")).to_have_text(note)
    expect(card["refused"]).not_to_contain_text("Cancelling…")
    expect(card["unknown"].locator("[data-testid=waiting-note]")).to_contain_text("An operator has been told")
    expect(card["stalled"].locator("[data-testid=waiting-note]")).to_contain_text("An operator has been told")
    expect(card["unknown"]).not_to_contain_text("ReadTimeout")
    page.screenshot(path=str(shots / "cards.png"), full_page=True)
    for name in ("cannot", "refused", "unknown", "stalled"):
        card[name].screenshot(path=str(shots / f"card-{name}.png"))


def test_an_operator_attaches_a_render_from_its_page_and_resolves_an_alert_from_the_banner(
    page, live_server, make_user, shots
):
    sam = make_user("sam", is_staff=True, is_superuser=True)
    render = unknown(sam)
    cut_off = GatewayAlert.raise_alert(
        GatewayAlert.Kind.SUBMIT_UNKNOWN, f"Render {render.pk}: cut off", render=render
    )
    wallet = GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, "The gateway's wallet is empty.")
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in(page, live_server, sam)

    page.goto(f"{live_server.url}/renders/{render.pk}/detail/#staff-panel")
    panel = page.locator("#staff-panel")
    expect(panel.locator("[data-testid=attach]")).to_be_visible()
    expect(panel.locator("[data-testid=not-sent]")).to_be_visible()
    expect(panel.locator("[data-testid=not-sent-resubmit]")).to_be_visible()
    page.screenshot(path=str(shots / "detail-staff.png"), full_page=True)
    panel.screenshot(path=str(shots / "staff-panel.png"))

    panel.locator("#operator-task-id").fill("task-42")
    panel.locator("[data-testid=attach]").click()
    expect(page.locator("#toasts")).to_contain_text("Attached to gateway task task-42")
    expect(page.locator("#staff-panel [data-testid=task-id]")).to_have_text("task-42")
    expect(page.locator("#staff-panel [data-testid=attach]")).to_have_count(0)
    expect(page.locator("#status [data-testid=state]")).to_have_text("Queued")  # the status panel followed
    expect(page.locator(f"#alert-{cut_off.pk}")).to_have_count(
        0
    )  # attaching closed its alert: the banner went
    page.locator("#staff-panel").screenshot(path=str(shots / "staff-panel-attached.png"))
    assert Render.objects.get(pk=render.pk).gateway_task_id == "task-42"

    banner = page.locator(f"#alert-{wallet.pk}")
    expect(banner).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")  # the page opened at the staff panel's anchor
    page.screenshot(path=str(shots / "banner.png"))
    banner.locator("[data-testid=resolve-alert]").click()
    expect(banner).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("Resolved.")
    assert GatewayAlert.objects.get(pk=wallet.pk).resolved_at is not None
    page.screenshot(path=str(shots / "banner-resolved.png"))


def test_not_sent_asks_first_then_releases_the_hold(page, live_server, make_user):
    sam = make_user("sam", is_staff=True, is_superuser=True)
    render = unknown(sam)
    log_in(page, live_server, sam)
    page.goto(f"{live_server.url}/renders/{render.pk}/detail/")

    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.locator("[data-testid=not-sent]").click()
    page.wait_for_timeout(300)
    assert questions and "never sent" in questions[0]
    assert Render.objects.get(pk=render.pk).state == State.SUBMIT_UNKNOWN  # dismissed: nothing happened

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-testid=not-sent]").click()
    expect(page.locator("#toasts")).to_contain_text("its hold is released")
    expect(page.locator("#status [data-testid=state]")).to_have_text("Failed")
    expect(page.locator("#staff-panel")).to_contain_text("No operator action applies to a failed render.")
    assert Render.objects.get(pk=render.pk).state == State.FAILED


def test_from_reconciliation_an_operator_reaches_the_actions_of_a_stuck_render(
    page, live_server, make_user, shots
):
    sam = make_user("sam", is_staff=True, is_superuser=True)
    team = Team.objects.create(name="Crew", slug="crew")
    Membership.objects.create(team=team, user=sam, role=Role.ADMIN)
    render = stalled(sam, team)
    unknown(sam, team)
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in(page, live_server, sam)

    page.goto(f"{live_server.url}/reconcile/?team={team.pk}")
    row = page.locator(f"#stuck tr[data-render='{render.pk}']")
    expect(row).to_contain_text("Recheck it at the gateway")
    page.screenshot(path=str(shots / "reconcile.png"), full_page=True)
    row.locator("[data-testid=operator-actions]").click()
    expect(page.locator("#staff-panel [data-testid=recheck]")).to_be_visible()
    assert page.url.endswith(f"/renders/{render.pk}/detail/#staff-panel")
