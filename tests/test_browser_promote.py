"""A draft promoted to Sora 2 Pro, in Debian's Chromium driven by Playwright, through a real cluster."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from studio.models import Render
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

CLIP_TIMEOUT = 90_000  # ms: a render through the cluster and the emulator


def current_time(video) -> float:
    return video.evaluate("v => v.currentTime")


def test_promote_a_draft_to_pro_and_compare_them_side_by_side(logged_in, cluster, tmp_path):
    page = logged_in
    cluster.start()
    image = tmp_path / "harbour.png"
    Image.effect_noise((128, 72), 60).convert("RGB").save(image, "PNG")

    # A 10 s Sora 2 draft with an init image.
    page.fill("#id_prompt", "A paper boat drifts down a rain gutter, neon reflections")
    page.select_option("#id_duration_sora2", "10")
    page.set_input_files("#id_init_image", str(image))
    expect(page.locator("[data-testid=estimate-total]")).to_have_text("$1.00")
    page.click("button:has-text('Render')")
    draft_card = page.locator(".card").first
    expect(draft_card.locator("video")).to_be_visible(timeout=CLIP_TIMEOUT)
    draft = Render.objects.get()

    # Promote: the Pro form, pre-filled, with both costs and the warning.
    draft_card.locator("[data-testid=promote]").click()
    notice = page.locator("[data-testid=promotion-notice]")
    expect(notice).to_be_visible()
    expect(notice.locator("[data-testid=draft-cost]")).to_have_text("$1.00")
    expect(notice.locator("[data-testid=pro-cost]")).to_have_text("$2.31")
    expect(notice).to_contain_text("Re-imagined, not upscaled.")
    expect(page.locator("#id_model")).to_have_value("sora-2-pro")
    expect(page.locator("#id_prompt")).to_have_value(draft.prompt)
    expect(page.locator("#id_aspect_ratio")).to_have_value("16:9")
    expect(page.locator("#id_resolution")).to_have_value("1080p")
    expect(page.locator("#id_duration_pro")).to_have_value("10")
    expect(page.locator("[data-testid=draft-init-image]")).to_be_visible()
    expect(page.locator("#id_size")).to_be_hidden()
    page.screenshot(path=str(tmp_path / "promote-form.png"))

    # The live estimate reprices the notice's Pro cost, then back to 10 s.
    page.fill("#id_duration_pro", "12")
    expect(notice.locator("[data-testid=pro-cost]")).to_have_text("$2.78")
    page.fill("#id_duration_pro", "10")
    expect(notice.locator("[data-testid=pro-cost]")).to_have_text("$2.31")

    page.click("button:has-text('Render')")
    pro_card = page.locator(".card").first
    expect(pro_card.locator(".badge.model")).to_have_text("Sora 2 Pro")
    expect(notice).to_be_hidden()  # the fresh form promotes nothing more
    expect(pro_card.locator("video")).to_be_visible(timeout=CLIP_TIMEOUT)
    pro = Render.objects.exclude(pk=draft.pk).get()
    assert pro.parent_id == draft.pk and pro.init_image and pro.params["resolution"] == "1080p"

    # The lineage: both players side by side and the combined cost.
    pro_card.locator("[data-testid=lineage]").click()
    expect(page).to_have_url(re.compile(rf"/renders/{pro.pk}/lineage/$"))
    draft.refresh_from_db()
    pro.refresh_from_db()
    expect(page.locator("[data-testid=lineage-cost]")).to_have_text(
        f"${draft.shown_cost + pro.shown_cost:.2f}"
    )
    videos = page.locator("video[data-sync]")
    expect(videos).to_have_count(2)
    expect(page.locator("[data-testid=lineage-panel] [data-testid=model]")).to_have_text(
        ["Sora 2 (draft)", "Sora 2 Pro"]
    )
    first, second = videos.nth(0), videos.nth(1)
    for video in (first, second):
        wait_for(lambda v=video: v.evaluate("v => v.readyState >= 1"), timeout=15)

    # Play all, then pausing or seeking one player moves the other, without echoing back.
    page.click("[data-sync-toggle]")
    expect(page.locator("[data-sync-toggle]")).to_have_text("Pause all")
    wait_for(lambda: current_time(first) > 0.3 and current_time(second) > 0.3, timeout=15)
    first.evaluate("v => v.pause()")
    wait_for(lambda: second.evaluate("v => v.paused"), timeout=10)
    expect(page.locator("[data-sync-toggle]")).to_have_text("Play all")
    second.evaluate("v => { v.currentTime = 6; }")
    wait_for(lambda: abs(current_time(first) - 6) < 0.3, timeout=10)
    assert abs(current_time(second) - 6) < 0.3  # not dragged back by the mirrored seek
    page.screenshot(path=str(tmp_path / "lineage.png"))
