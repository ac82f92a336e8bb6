"""Variants and prompt memory (issue 12) as a person uses them, in Debian's Chromium driven by Playwright.

Render ×3 from the studio page through a real cluster, the three cards framed as one group, their contact sheet
playing the three takes in sync (play, pause, seek on any of them or on the shared scrubber), then promoting the
keeper. Prompt memory: save the form, search, click to fill the form; the prompt's character counter.

Set STUDIO_SCREENSHOTS to a folder to keep the screenshots (the contact sheet's is looked at by a person).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from studio.models import Render, SavedPrompt
from tests.conftest import wait_for
from tests.fixtures import make_render

pytestmark = pytest.mark.browser

CLIP_TIMEOUT = 120_000  # ms: three renders through the cluster and the emulator


def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def times(page) -> list[float]:
    return page.eval_on_selector_all("video[data-sync]", "vs => vs.map(v => v.currentTime)")


def together(page, near: float | None = None, within: float = 0.35) -> bool:
    """Whether every take has settled (no seek under way) at the same moment (and near `near`, if given)."""
    if page.eval_on_selector_all("video[data-sync]", "vs => vs.some(v => v.seeking)"):
        return False
    now = times(page)
    close = max(now) - min(now) < within
    return close and (near is None or all(abs(t - near) < within for t in now))


def test_render_x3_then_play_the_takes_in_sync_on_the_contact_sheet_and_promote_the_keeper(
    logged_in, cluster, tmp_path
):
    page = logged_in
    cluster.start()

    # ×3: the button and the live estimate say so.
    page.fill("#id_prompt", "A paper lantern drifts over a dark lake, three takes")
    page.select_option("#id_variants", "3")
    expect(page.locator("[data-testid=render-button]")).to_have_text("Render ×3")
    expect(page.locator("[data-testid=estimate-total]")).to_have_text("$1.50")
    expect(page.locator("[data-testid=estimate-variants]")).to_have_text("×3")
    page.click("[data-testid=render-button]")

    # Three cards, framed as one group at once.
    group = page.locator("[data-testid=variant-group]")
    expect(group).to_have_count(1)
    expect(group.locator(".card")).to_have_count(3)
    expect(group.locator("[data-testid=variant-badge]")).to_have_text(["1/3", "2/3", "3/3"])
    expect(group.locator(".card").first.locator("video")).to_be_visible(timeout=CLIP_TIMEOUT)
    # All three finish (read from the database: the page's live feed is another test's subject), and the page
    # drawn afresh still frames them as one group.
    wait_for(lambda: Render.objects.filter(state="completed").count() == 3, timeout=CLIP_TIMEOUT / 1000)
    takes = list(Render.objects.order_by("variant_index"))
    assert len(takes) == 3 and len({take.variant_group for take in takes}) == 1
    page.reload()
    expect(group.locator(".card video")).to_have_count(3)
    page.screenshot(path=str(shots(tmp_path) / "variants-studio.png"), full_page=True)

    # The contact sheet: three players, one transport.
    group.locator("[data-testid=contact-sheet-link]").click()
    expect(page).to_have_url(re.compile(rf"/renders/{takes[0].pk}/variants/$"))
    videos = page.locator("video[data-sync]")
    expect(videos).to_have_count(3)
    for index in range(3):
        wait_for(lambda i=index: videos.nth(i).evaluate("v => v.readyState >= 1"), timeout=15)

    page.click("[data-testid=play-all]")
    expect(page.locator("[data-testid=play-all]")).to_have_text("Pause all")
    wait_for(lambda: min(times(page)) > 0.5, timeout=15)
    page.click("[data-testid=play-all]")
    wait_for(lambda: videos.nth(2).evaluate("v => v.paused"), timeout=10)
    assert all(videos.nth(i).evaluate("v => v.paused") for i in range(3))
    wait_for(lambda: together(page), timeout=10)

    # Seek with the shared scrubber, then on one take's own player: the others follow.
    page.eval_on_selector(
        "[data-sync-scrub]", "s => { s.value = '3.2'; s.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    wait_for(lambda: together(page, 3.2), timeout=10)
    videos.nth(1).evaluate("v => { v.currentTime = 1.5; }")
    wait_for(lambda: together(page, 1.5), timeout=10)
    # Pausing a playing take from its own controls pauses the others.
    videos.nth(2).evaluate("v => v.play()")
    wait_for(lambda: all(not videos.nth(i).evaluate("v => v.paused") for i in range(3)), timeout=10)
    videos.nth(0).evaluate("v => v.pause()")
    wait_for(lambda: all(videos.nth(i).evaluate("v => v.paused") for i in range(3)), timeout=10)
    assert together(page)
    videos.nth(0).evaluate("v => { v.currentTime = 2.5; }")
    wait_for(lambda: together(page, 2.5), timeout=10)
    page.screenshot(path=str(shots(tmp_path) / "contact-sheet.png"), full_page=True)

    # Keep take 2: promote it to Pro through the studio form.
    keeper = takes[1]
    page.locator(f"#take-{keeper.pk} [data-testid=promote]").click()
    expect(page.locator("[data-testid=promotion-notice]")).to_be_visible()
    expect(page.locator("#id_model")).to_have_value("sora-2-pro")
    expect(page.locator("[data-testid=render-button]")).to_have_text("Render")  # the promotion is one render
    page.click("[data-testid=render-button]")
    expect(page.locator(".card").first.locator(".badge.model")).to_have_text("Sora 2 Pro")
    pro = wait_for(lambda: Render.objects.filter(model="sora-2-pro").first(), timeout=10)
    assert pro.parent_id == keeper.pk and pro.prompt == keeper.prompt and pro.variant_group is None


def test_save_search_and_pick_a_prompt_and_watch_the_counter(logged_in, owner, tmp_path):
    page = logged_in
    make_render(owner, prompt="A fox trots through fresh snow at dawn")
    page.reload()

    # The counter shows the limit before the box stops accepting text.
    counter = page.locator("[data-testid=prompt-count]")
    expect(counter).to_have_text("0 / 4,000")
    page.fill("#id_prompt", "x" * 3812)
    expect(counter).to_have_text("3,812 / 4,000")
    expect(counter).to_have_class(re.compile(r"\bnear\b"))
    page.fill("#id_prompt", "x" * 3998)
    page.locator("#id_prompt").press("End")
    page.keyboard.type("abcdef")  # the box takes two more characters, no more
    assert page.locator("#id_prompt").evaluate("t => t.value.length") == 4000
    expect(counter).to_have_text("4,000 / 4,000")
    expect(counter).to_have_class(re.compile(r"\bfull\b"))

    # Save the form as a named prompt.
    page.select_option("#id_model", "sora-2-pro")
    page.fill("#id_prompt", "A heron lands on a misty pond, long lens")
    page.fill("#id_duration_pro", "6")
    page.select_option("#id_resolution", "720p")
    page.select_option("#id_aspect_ratio", "9:16")
    page.fill("#id_seed", "12")
    page.click("#prompt-memory summary")
    expect(page.locator("[data-testid=recent-prompt]")).to_have_count(1)  # the list loads when opened
    page.fill("#prompt-save-name", "Heron, vertical")
    page.click("[data-testid=prompt-save]")
    expect(page.locator("[data-testid=saved-prompt]")).to_have_count(1)
    expect(page.locator("[data-testid=saved-prompt]")).to_contain_text("Heron, vertical")
    expect(page.locator("#prompt-save-name")).to_have_value("")  # ready for the next one
    assert SavedPrompt.objects.get().params["aspect_ratio"] == "9:16"

    # Start over on Sora 2, then search and pick: the form is filled and re-priced.
    page.select_option("#id_model", "sora2")
    page.fill("#id_prompt", "Something else")
    expect(page.locator("[data-testid=estimate-total]")).to_have_text("$0.50")
    page.fill("#prompt-search", "heron")
    expect(page.locator("[data-testid=recent-prompt]")).to_have_count(0)
    expect(page.locator("[data-testid=saved-prompt]")).to_have_count(1)
    page.locator("[data-testid=saved-prompt] .prompt-pick").click()
    expect(page.locator("#id_model")).to_have_value("sora-2-pro")
    expect(page.locator("#id_prompt")).to_have_value("A heron lands on a misty pond, long lens")
    expect(page.locator("#id_duration_pro")).to_have_value("6")
    expect(page.locator("#id_resolution")).to_have_value("720p")
    expect(page.locator("#id_aspect_ratio")).to_have_value("9:16")
    expect(page.locator("#id_seed")).to_have_value("12")
    expect(page.locator("[data-testid=estimate-total]")).to_have_text("$0.83")  # 6 s × $0.13875/s
    expect(counter).to_have_text("40 / 4,000")

    # A recent prompt fills the form the same way.
    page.fill("#prompt-search", "fox")
    page.locator("[data-testid=recent-prompt] .prompt-pick").click()
    expect(page.locator("#id_model")).to_have_value("sora2")
    expect(page.locator("#id_prompt")).to_have_value("A fox trots through fresh snow at dawn")
    expect(page.locator("[data-testid=estimate-total]")).to_have_text("$0.50")
    page.screenshot(path=str(shots(tmp_path) / "prompt-memory.png"), full_page=True)
