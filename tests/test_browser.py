"""The studio as a person uses it, in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_for

pytestmark = pytest.mark.browser


def test_write_a_prompt_see_its_cost_render_and_play_the_clip(logged_in, cluster, tmp_path):
    page = logged_in
    cluster.start()
    estimate = page.locator("[data-testid=estimate-total]")
    assert estimate.inner_text() == "$0.50"

    page.fill("#id_prompt", "A red apple rolls slowly across a wooden table, soft window light")
    page.select_option("#id_duration_sora2", "10")
    expect(estimate).to_have_text("$1.00")
    page.select_option("#id_model", "sora-2-pro")
    expect(estimate).to_have_text("$1.85")
    assert page.locator("#id_seed").is_visible() and not page.locator("#id_size").is_visible()
    page.select_option("#id_model", "sora2")
    expect(estimate).to_have_text("$1.00")

    page.click("button:has-text('Render')")
    card = page.locator(".card").first
    card.wait_for()
    assert "A red apple rolls" in card.inner_text()
    page.screenshot(path=str(tmp_path / "submitted.png"))

    card.locator("video").wait_for(timeout=90_000)  # the poller swaps in the finished card, no reload
    assert card.locator("[data-testid=state]").inner_text() == "Completed"
    assert "billed $1.00" in card.inner_text()
    video = card.locator("video")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for(lambda: video.evaluate("v => v.currentTime") > 0.2, timeout=15)
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(10, abs=0.5)
    video.evaluate("v => { v.pause(); v.currentTime = 7; }")  # seeking needs Range support on the clip URL
    wait_for(lambda: abs(video.evaluate("v => v.currentTime") - 7) < 0.5, timeout=15)
    assert video.evaluate("v => v.seekable.length && v.seekable.end(0)") == pytest.approx(10, abs=0.5)
    page.screenshot(path=str(tmp_path / "finished.png"))


def test_a_card_the_poller_brought_first_is_not_shown_twice(logged_in, owner):
    from decimal import Decimal

    from studio.models import Render

    page = logged_in
    render = Render.objects.create(
        user=owner,
        model="sora2",
        prompt="A kite over the dunes",
        params={"duration_seconds": 5, "size": "1280x720"},
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
    )
    page.reload()
    card = page.locator(f"#render-{render.pk}")
    expect(card).to_have_count(1)
    # What a submit answer does when the poller already inserted the same card: prepend it again, then swap.
    page.evaluate(
        "id => { const list = document.getElementById('render-list');"
        " list.prepend(document.getElementById(id).cloneNode(true));"
        " document.dispatchEvent(new CustomEvent('htmx:afterSwap')); }",
        f"render-{render.pk}",
    )
    expect(card).to_have_count(1)
