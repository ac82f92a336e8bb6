"""The studio as a person uses it, in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import expect

from tests.conftest import service_missing, wait_for

pytestmark = pytest.mark.browser
# Playwright's sync API runs an event loop in the test thread; the ORM calls made beside it are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("STUDIO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        service_missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ARGS}


@pytest.fixture
def logged_in(page, live_server, owner):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", "pw-" + owner.username)
    page.click("button[type=submit]")
    page.wait_for_selector("#id_prompt")
    return page


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
