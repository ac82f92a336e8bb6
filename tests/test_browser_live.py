"""The page stays live (issue 12): renders started anywhere appear and finish on an idle page; the review badge and
queue follow teammates; opted-in browser notifications while the tab is hidden. Debian's Chromium via Playwright."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from studio.models import Render, ReviewState, State
from tests.fixtures import join, make_render

pytestmark = pytest.mark.browser

# Wrap window.Notification before any page script runs: every notification shown is recorded, in order.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.shownNotifications = [];
  function Recorded(title, options) {
    window.shownNotifications.push({title: title, body: (options || {}).body || "", tag: (options || {}).tag || ""});
    return new Real(title, options);
  }
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.prototype = Real.prototype;
  window.Notification = Recorded;
})();
"""

# The tab reports itself hidden while window.pretendHidden is true (a real hidden tab cannot be made headless).
PRETEND_HIDDEN = """
(() => {
  window.pretendHidden = false;
  Object.defineProperty(document, "visibilityState", {get: () => window.pretendHidden ? "hidden" : "visible"});
  Object.defineProperty(document, "hidden", {get: () => window.pretendHidden});
})();
"""


def test_an_idle_page_shows_a_render_started_from_the_command_line_and_it_runs_to_completed(
    logged_in, owner, cluster
):
    page = logged_in
    make_render(owner, State.COMPLETED, prompt="Finished long ago")  # nothing in flight when the page loads
    page.reload()
    expect(page.locator(".card")).to_have_count(1)
    cluster.start()
    call_command("render", "--user", owner.username, "A lighthouse beam sweeps over a stormy sea")
    new = Render.objects.get(prompt__startswith="A lighthouse")
    card = page.locator(f"#render-{new.pk}")
    expect(card).to_have_count(1, timeout=30_000)  # appeared without a reload
    expect(page.locator(".card").first).to_have_id(f"render-{new.pk}")
    expect(card.locator("[data-testid=state]")).to_have_text("Completed", timeout=120_000)
    expect(card.locator("video")).to_have_count(1)


def test_a_hidden_idle_page_sends_no_poll(logged_in, owner):
    page = logged_in
    page.evaluate(
        "() => { window.pollsSent = 0; document.body.addEventListener('htmx:beforeRequest',"
        " (e) => { if (e.detail.elt.id === 'poll') window.pollsSent += 1; }); }"
    )
    page.wait_for_function("() => window.pollsSent >= 1", timeout=20_000)  # visible: live, gently
    page.evaluate("() => Object.defineProperty(document, 'hidden', {get: () => true, configurable: true})")
    page.evaluate("() => { window.pollsSent = 0; }")
    page.wait_for_timeout(12_000)  # two idle ticks and more
    assert page.evaluate("window.pollsSent") == 0


@pytest.fixture
def notifying(page, live_server, context):
    """A Chromium page allowed to notify, whose notifications are recorded and whose visibility we control."""
    context.grant_permissions(["notifications"], origin=live_server.url)
    page.add_init_script(RECORD_NOTIFICATIONS)
    page.add_init_script(PRETEND_HIDDEN)
    return page


def log_in(page, live_server, user, path: str = "/"):
    page.goto(f"{live_server.url}/login/?next={path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def notified(page) -> list[dict]:
    return page.evaluate("window.shownNotifications")


def test_my_render_finishing_while_the_tab_is_hidden_notifies_me_once_i_opted_in(
    notifying, live_server, owner
):
    page = notifying
    log_in(page, live_server, owner)
    flying = make_render(owner, State.RUNNING, prompt="A comet over a frozen lake", progress=40)
    expect(page.locator(f"#render-{flying.pk}")).to_have_count(1, timeout=20_000)
    button = page.locator("[data-testid=notify-toggle]")
    expect(button).to_have_text("Turn on notifications")
    button.click()
    expect(button).to_have_text("Notifications on")

    page.evaluate("window.pretendHidden = true")
    from django.utils import timezone

    Render.objects.filter(pk=flying.pk).update(
        state=State.COMPLETED, progress=100, finished_at=timezone.now(), updated_at=timezone.now()
    )
    page.wait_for_function("() => window.shownNotifications.length >= 1", timeout=30_000)
    [shown] = notified(page)
    assert shown["title"] == "Your render is ready"
    assert "A comet over a frozen lake" in shown["body"]

    failing = make_render(owner, State.RUNNING, prompt="A glass city at dawn")
    Render.objects.filter(pk=failing.pk).update(
        state=State.FAILED,
        error="The gateway could not render it.",
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    page.wait_for_function("() => window.shownNotifications.length >= 2", timeout=60_000)
    assert notified(page)[1]["title"] == "Your render failed"
    assert "A glass city at dawn" in notified(page)[1]["body"]


def test_nothing_is_notified_while_the_tab_is_visible_or_before_opting_in(notifying, live_server, owner):
    page = notifying
    log_in(page, live_server, owner)
    from django.utils import timezone

    flying = make_render(owner, State.RUNNING, prompt="Seen on screen")
    expect(page.locator(f"#render-{flying.pk}")).to_have_count(1, timeout=20_000)
    page.evaluate("window.pretendHidden = true")  # hidden, but not opted in
    Render.objects.filter(pk=flying.pk).update(
        state=State.COMPLETED, finished_at=timezone.now(), updated_at=timezone.now()
    )
    expect(page.locator(f"#render-{flying.pk} [data-testid=state]")).to_have_text("Completed", timeout=30_000)
    page.evaluate("window.pretendHidden = false")
    page.locator("[data-testid=notify-toggle]").click()
    second = make_render(owner, State.RUNNING, prompt="Also seen on screen")
    expect(page.locator(f"#render-{second.pk}")).to_have_count(1, timeout=20_000)
    Render.objects.filter(pk=second.pk).update(
        state=State.COMPLETED, finished_at=timezone.now(), updated_at=timezone.now()
    )
    expect(page.locator(f"#render-{second.pk} [data-testid=state]")).to_have_text("Completed", timeout=30_000)
    assert notified(page) == []  # visible: the card itself says so


def test_a_reviewer_is_notified_of_a_clip_to_review_and_the_author_of_its_review(
    notifying, live_server, browser, owner, team, reviewer
):
    from django.utils import timezone

    from studio.actions.review import do_review_render

    page = notifying
    log_in(page, live_server, reviewer, "/review/")
    page.locator("[data-testid=notify-toggle]").click()
    page.evaluate("window.pretendHidden = true")
    clip = make_render(
        owner, State.COMPLETED, team=team, prompt="A fox in the snow", finished_at=timezone.now()
    )
    page.wait_for_function("() => window.shownNotifications.length >= 1", timeout=60_000)
    [shown] = notified(page)
    assert shown["title"] == "A clip waits for your review"
    assert "olivia" in shown["body"] and "A fox in the snow" in shown["body"]
    # The queue and the badge followed, without a reload.
    expect(page.locator(f"#queue-{clip.pk}")).to_have_count(1)
    expect(page.locator("[data-testid=queue-count]")).to_have_text("1")
    expect(page.locator("#to-review-badge [data-testid=to-review-count]")).to_have_text("1")

    author = browser.new_context()
    author.grant_permissions(["notifications"], origin=live_server.url)
    author_page = author.new_page()
    author_page.add_init_script(RECORD_NOTIFICATIONS)
    author_page.add_init_script(PRETEND_HIDDEN)
    log_in(author_page, live_server, owner, "/gallery/")
    author_page.locator("[data-testid=notify-toggle]").click()
    author_page.evaluate("window.pretendHidden = true")
    do_review_render(Render.objects.get(pk=clip.pk), reviewer, ReviewState.APPROVED, "Lovely")
    author_page.wait_for_function(
        "() => window.shownNotifications.some(n => n.title === 'Your clip was approved')", timeout=60_000
    )
    [reviewed] = [n for n in notified(author_page) if n["title"] == "Your clip was approved"]
    assert "rita" in reviewed["body"] and "A fox in the snow" in reviewed["body"]
    author.close()


def test_the_review_queue_and_badge_follow_a_teammates_decision(page, live_server, team, make_user):
    from django.utils import timezone

    from studio.actions.review import do_review_render

    author = join(team, make_user("rita"), "reviewer")
    ray = join(team, make_user("ray"), "reviewer")
    rhea = join(team, make_user("rhea"), "reviewer")
    clips = [
        make_render(author, State.COMPLETED, team=team, prompt=f"Clip {n}", finished_at=timezone.now())
        for n in range(2)
    ]
    log_in(page, live_server, ray, "/review/")
    expect(page.locator("[data-testid=queue-count]")).to_have_text("2")
    do_review_render(clips[0], rhea, ReviewState.REJECTED, "")  # a teammate decides, elsewhere
    expect(page.locator(f"#queue-{clips[0].pk}")).to_have_count(0, timeout=20_000)
    expect(page.locator("[data-testid=queue-count]")).to_have_text("1")
    expect(page.locator("#to-review-badge [data-testid=to-review-count]")).to_have_text("1")


def test_the_eta_never_jumps_backwards(logged_in, owner):
    from datetime import timedelta

    from django.utils import timezone

    page = logged_in
    started = timezone.now() - timedelta(seconds=4)
    flying = make_render(owner, State.RUNNING, progress=16, started_at=started)  # about 21 s left
    page.reload()
    card = page.locator(f"#render-{flying.pk}")
    expect(card).to_contain_text("Rendering · 16%", timeout=20_000)
    first = seconds_left(card)
    # Progress reported late: 36 % after a long while makes the naive estimate jump up (over a minute left).
    Render.objects.filter(pk=flying.pk).update(
        progress=36, started_at=timezone.now() - timedelta(seconds=60), updated_at=timezone.now()
    )
    expect(card).to_contain_text("Rendering · 36%", timeout=20_000)
    assert seconds_left(card) <= first
    page.wait_for_timeout(1500)  # and it keeps counting down, never up
    assert seconds_left(card) <= first


def seconds_left(card) -> int:
    import re

    text = card.inner_text()
    found = re.search(r"about (?:(\d+) min )?(\d+) s left", text)
    assert found, text
    return int(found.group(1) or 0) * 60 + int(found.group(2))
