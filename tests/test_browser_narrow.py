"""The nav on a phone-sized screen (issue 12, defect 12): the "To review" badge stays on its link's line."""

from __future__ import annotations

import pytest

from studio.models import State
from tests.fixtures import join, make_render

pytestmark = pytest.mark.browser


def test_the_to_review_badge_does_not_wrap_on_a_390_px_screen(
    browser, live_server, owner, team, make_user, tmp_path
):
    rita = join(team, make_user("rita"), "reviewer")
    for _ in range(34):  # a two-digit count, as in the report
        make_render(owner, State.COMPLETED, team=team)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", rita.username)
    page.fill("#id_password", "pw-rita")
    page.click("button[type=submit]")
    page.wait_for_selector("#id_prompt")
    link = page.locator(".main-nav a[href='/review/']")
    badge = link.locator("[data-testid=to-review-count]")
    assert badge.inner_text() == "34"
    page.screenshot(path=str(tmp_path / "nav-390.png"))

    words = link.evaluate(
        "a => { const r = document.createRange(); r.selectNodeContents(a.firstChild);"
        " const b = r.getBoundingClientRect(); return {top: b.top, bottom: b.bottom}; }"
    )
    box = badge.bounding_box()
    middle = box["y"] + box["height"] / 2
    assert words["top"] <= middle <= words["bottom"], (words, box)  # on the line of "To review"
    context.close()
