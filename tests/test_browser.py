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


def running(owner, prompt: str = "A kite over the dunes", **fields):
    """A render in flight (so the page polls), made as the command line would: not through the page."""
    from decimal import Decimal

    from studio.models import Render, State

    return Render.objects.create(
        user=owner,
        model="sora2",
        prompt=prompt,
        params={"duration_seconds": 5, "size": "1280x720"},
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
        state=State.RUNNING,
        **fields,
    )


def record_missing_targets(page) -> None:
    """Count htmx's complaints about an out-of-band swap whose target is not on the page."""
    page.evaluate(
        "() => { window.missingTargets = 0;"
        " document.body.addEventListener('htmx:oobErrorNoTarget', () => { window.missingTargets += 1; }); }"
    )


def test_a_render_made_elsewhere_arrives_once_on_top_and_then_changes_in_place(logged_in, owner):
    from django.utils import timezone

    from studio.models import Render

    page = logged_in
    running(owner, "Already rendering")
    page.reload()
    record_missing_targets(page)
    elsewhere = running(owner, "Sent from the command line", progress=10)
    card = page.locator(f"#render-{elsewhere.pk}")
    expect(page.locator(".card").first).to_have_id(f"render-{elsewhere.pk}")  # the poller put it on top
    Render.objects.filter(pk=elsewhere.pk).update(progress=60, updated_at=timezone.now())
    expect(card).to_contain_text("Rendering · 60%")
    expect(card).to_have_count(1)
    expect(page.locator(".card")).to_have_count(2)
    assert page.evaluate("window.missingTargets") == 0


def test_a_submit_while_a_poll_is_in_flight_adds_its_card_once(logged_in, owner):
    from studio.models import Render

    page = logged_in
    first = running(owner, "Already rendering")
    page.reload()
    record_missing_targets(page)
    held, submits = [], []
    page.on("request", lambda request: submits.append(request) if request.url.endswith("/renders/") else None)
    page.route("**/renders/poll/**", lambda route: held.append(route) if not held else route.continue_())
    page.wait_for_timeout(1500)  # the next tick's request is held: a poll in flight
    assert held

    page.fill("#id_prompt", "A red apple rolls slowly across a wooden table")
    page.click("button:has-text('Render')")
    page.wait_for_timeout(500)
    assert submits == []  # the submit waits for the poll in flight (hx-sync on #poller) ...
    held[0].continue_()  # ... whose answer could not know of the new render
    expect(page.locator(".card")).to_have_count(2)
    new = Render.objects.exclude(pk=first.pk).get()
    page.wait_for_timeout(2500)  # more polls, none of which adds the card again
    expect(page.locator(f"#render-{new.pk}")).to_have_count(1)
    expect(page.locator(".card")).to_have_count(2)
    assert page.evaluate("window.missingTargets") == 0
