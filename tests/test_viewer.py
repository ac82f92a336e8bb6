"""The review viewer and "Save this frame": a clip in the full window, moving through the list it came from.

People: Olivia (owner, member of Acme, who renders), Tom (teammate), Rita (reviewer), Ada (admin), Oscar (outsider).
Decisions pinned here: the viewer's URL names the clip and the list (the gallery's filters, or the review queue in
its order), so it opens on that clip for anyone in the team and 404s for outsiders; previous and next are the clip's
neighbours in that list, also once it has left it (just reviewed); Esc goes back to where the viewer was opened;
a frame is the one a player shows at `t` (the last that started at or before it), taken from the file, as a PNG.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal
from html import unescape
from pathlib import Path

import imageio_ffmpeg
import pytest
from conftest import HTMX
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageChops, ImageStat

from studio.models import Comment, Render, ReviewState, State
from tests.conftest import make_clip
from tests.fixtures import browser_log_in as log_in
from tests.fixtures import client_for, make_render

# --- clips -----------------------------------------------------------------------------------------------------


def finished_clip(
    author, team, prompt: str, *, age: int = 0, real: bool = False, seconds: float = 2, **fields
):
    """A finished clip of `author` in `team`, `age` minutes old, its file on disk (a real 24 fps clip if `real`)."""
    from django.conf import settings

    render = make_render(
        author,
        team=team,
        prompt=prompt,
        created_at=timezone.now() - timedelta(minutes=age),
        billed_cost=Decimal("0.5"),
        video_duration=seconds,
        video_width=160,
        video_height=90,
        finished_at=timezone.now(),
        **fields,
    )
    name = f"renders/{render.pk}/clip.mp4"
    path = settings.MEDIA_ROOT + "/" + name
    if real:
        make_clip(path, size="160x90", seconds=seconds, rate=24)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    Render.objects.filter(pk=render.pk).update(video=name)
    render.refresh_from_db()
    return render


def viewer_url(render: Render, query: str = "") -> str:
    return reverse("viewer", args=[render.pk]) + (f"?{query}" if query else "")


def stage(html: str) -> dict:
    """The viewer stage's data attributes (previous, next, close, url...), unescaped."""
    tag = re.search(r'<div id="viewer-stage"[^>]*>', html, re.S).group(0)
    return {k: unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', tag)}


def clip_id(url: str) -> str:
    return re.search(r"/renders/([0-9a-f-]{36})/view/", url).group(1)


@pytest.fixture
def clips(owner, team) -> list[Render]:
    """Four finished clips of Olivia in Acme, newest first: a Sora 2, a Pro, a Sora 2 and a Sora 2."""
    return [
        finished_clip(owner, team, "first: a red kite", age=1),
        finished_clip(owner, team, "second: a pro shot", age=2, model="sora-2-pro"),
        finished_clip(owner, team, "third: a lighthouse", age=3),
        finished_clip(owner, team, "fourth: a harbour", age=4),
    ]


# --- the page --------------------------------------------------------------------------------------------------


def test_the_viewer_shows_the_clip_its_prompt_the_review_controls_and_the_keys(reviewer, clips):
    html = client_for(reviewer).get(viewer_url(clips[0], "list=gallery&scope=team")).content.decode()
    assert 'id="viewer-video"' in html and reverse("video", args=[clips[0].pk]) in html
    assert "first: a red kite" in html
    assert 'value="approved"' in html and 'value="changes_requested"' in html and 'value="rejected"' in html
    for key in ("←", "→", "Space", "A", "C", "R", "M", "F", "Esc"):
        assert f"<kbd>{key}</kbd>" in html
    assert "Save this frame" in html


def test_the_viewer_shows_no_review_buttons_to_a_member_who_does_not_review(teammate, clips):
    html = client_for(teammate).get(viewer_url(clips[0])).content.decode()
    assert "first: a red kite" in html and 'value="approved"' not in html


@pytest.mark.parametrize(("person", "status"), [("teammate", 200), ("outsider", 404)])
def test_a_viewer_url_opens_that_clip_for_the_team_and_is_404_for_outsiders(
    people_by_name, clips, person, status
):
    response = client_for(people_by_name[person]).get(
        viewer_url(clips[2], "list=gallery&scope=team&model=sora2")
    )
    assert response.status_code == status
    if status == 200:
        assert stage(response.content.decode())["render"] == str(clips[2].pk)


def test_a_private_clip_is_404_in_the_viewer_for_everyone_but_its_author(owner, reviewer, team):
    secret = finished_clip(owner, team, "a secret", private=True)
    assert client_for(reviewer).get(viewer_url(secret)).status_code == 404
    assert client_for(owner).get(viewer_url(secret)).status_code == 200


def test_anonymous_visitors_go_to_login(client, clips):
    response = client.get(viewer_url(clips[0]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# --- previous, next and close: the list it came from ------------------------------------------------------------


def test_previous_and_next_follow_the_gallery_newest_first(reviewer, clips):
    query = "list=gallery&scope=team"
    middle = stage(client_for(reviewer).get(viewer_url(clips[1], query)).content.decode())
    assert middle["previous"] == viewer_url(clips[0], query)
    assert middle["next"] == viewer_url(clips[2], query)
    first = stage(client_for(reviewer).get(viewer_url(clips[0], query)).content.decode())
    last = stage(client_for(reviewer).get(viewer_url(clips[3], query)).content.decode())
    assert first["previous"] == "" and last["next"] == ""


def test_previous_and_next_keep_the_gallerys_filters(reviewer, clips):
    """Filtered to Sora 2, the Pro clip between the first and the third is skipped; the cursor is not kept."""
    query = "list=gallery&scope=team&model=sora2"
    html = client_for(reviewer).get(viewer_url(clips[0], query + "&cursor=stale")).content.decode()
    assert stage(html)["next"] == viewer_url(clips[2], query)
    assert stage(html)["url"] == viewer_url(clips[0], query + "&cursor=stale")
    assert stage(html)["close"] == reverse("gallery") + "?scope=team&model=sora2"


@pytest.mark.parametrize("sort", ["cost", "duration", "newest"])
def test_next_walks_the_clips_in_the_gallerys_order(reviewer, clips, sort):
    """From the gallery's first card, → after → visits its cards in its order (ties in cost broken by id)."""
    Render.objects.filter(pk=clips[3].pk).update(billed_cost=Decimal("9"), seconds=8)
    browser = client_for(reviewer)
    gallery = browser.get(reverse("gallery"), {"scope": "team", "sort": sort}).content.decode()
    order = re.findall(r'<article id="clip-([0-9a-f-]{36})"', gallery)
    assert len(order) == 4
    walked, url = [], viewer_url(Render.objects.get(pk=order[0]), f"list=gallery&scope=team&sort={sort}")
    while url:
        here = stage(browser.get(url).content.decode())
        walked.append(here["render"])
        url = here["next"]
    assert walked == order


def test_the_review_list_goes_oldest_first_and_keeps_the_place_of_a_clip_just_reviewed(reviewer, clips):
    query = "list=review"
    browser = client_for(reviewer)
    html = browser.get(viewer_url(clips[2], query)).content.decode()
    assert stage(html)["previous"] == viewer_url(clips[3], query)  # older
    assert stage(html)["next"] == viewer_url(clips[1], query)
    assert stage(html)["close"] == reverse("review_queue")
    browser.post(reverse("review", args=[clips[2].pk]), {"state": "approved"}, **HTMX)
    browser.post(reverse("review", args=[clips[1].pk]), {"state": "rejected"}, **HTMX)
    html = browser.get(viewer_url(clips[2], query)).content.decode()  # no longer in the queue: still placed
    assert stage(html)["next"] == viewer_url(clips[0], query)


def test_opened_from_the_detail_page_esc_goes_back_to_it(reviewer, clips):
    html = client_for(reviewer).get(viewer_url(clips[1], "from=detail")).content.decode()
    assert stage(html)["close"] == reverse("detail", args=[clips[1].pk])
    assert "from=detail" in stage(html)["next"]


@pytest.mark.parametrize(
    "query", ["list=everything", "list=gallery&sort=colour", "from=elsewhere", "scope=nobody"]
)
def test_a_bad_list_is_a_400_that_says_why(reviewer, clips, query):
    response = client_for(reviewer).get(viewer_url(clips[0], query))
    assert response.status_code == 400 and response.content


def test_an_htmx_move_gets_only_the_stage(reviewer, clips):
    html = client_for(reviewer).get(viewer_url(clips[1], "list=gallery"), **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="viewer-stage"') and "<html" not in html


def test_the_gallery_the_queue_and_the_detail_page_open_the_viewer(reviewer, clips):
    browser = client_for(reviewer)
    gallery = browser.get(reverse("gallery") + "?scope=team&model=sora2").content.decode()
    assert unescape(viewer_url(clips[0], "list=gallery&scope=team&model=sora2")) in unescape(gallery)
    queue = browser.get(reverse("review_queue")).content.decode()
    assert viewer_url(clips[3], "list=review") in unescape(queue)
    detail = browser.get(reverse("detail", args=[clips[0].pk])).content.decode()
    assert viewer_url(clips[0], "from=detail") in unescape(detail)


# --- a frame as a PNG --------------------------------------------------------------------------------------------


@pytest.fixture
def real(owner, team) -> Render:
    """A real two-second 160x90 clip at 24 fps: 48 frames, each different (a moving test pattern)."""
    return finished_clip(owner, team, "a moving test pattern", real=True, seconds=2)


def decoded_frames(render: Render) -> list[Image.Image]:
    frames = imageio_ffmpeg.read_frames(render.video.path)
    meta = next(frames)
    width, height = meta["size"]
    return [Image.frombytes("RGB", (width, height), bytes(frame)) for frame in frames]


def frame(user, render: Render, t) -> object:
    return client_for(user).get(reverse("frame", args=[render.pk]), {"t": t})


@pytest.mark.parametrize(("t", "index"), [(0, 0), (0.02, 0), (1 / 24, 1), (0.5, 12), (0.52, 12), (1.999, 47)])
def test_the_frame_is_a_png_of_the_frame_on_screen_at_t(teammate, real, t, index):
    response = frame(teammate, real, t)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith('attachment; filename="studio-sora2-')
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (160, 90)
    frames = decoded_frames(real)
    assert len(frames) == 48
    difference = [sum(ImageStat.Stat(ImageChops.difference(image.convert("RGB"), f)).mean) for f in frames]
    assert difference[index] == 0
    assert (
        min(d for i, d in enumerate(difference) if i != index) > 0
    )  # the pattern moves: no other frame matches


@pytest.mark.parametrize(
    ("t", "message"),
    [
        (None, "Say which moment"),
        ("", "Say which moment"),
        ("soon", "t must be a number"),
        ("nan", "t must be a number"),
        ("inf", "t must be a number"),
        ("-0.1", "before the start"),
        ("2", "past the end of the clip (2 s)"),
        ("99", "past the end of the clip (2 s)"),
    ],
)
def test_a_bad_moment_is_a_400_that_says_why(teammate, real, t, message):
    browser = client_for(teammate)
    url = reverse("frame", args=[real.pk])
    response = browser.get(url) if t is None else browser.get(url, {"t": t})
    assert response.status_code == 400
    assert message in response.content.decode()


def test_an_outsider_gets_404_for_a_frame_and_a_clip_without_a_file_has_no_frame(outsider, owner, team, real):
    assert frame(outsider, real, 0.5).status_code == 404
    unfinished = make_render(owner, State.RUNNING, team=team)
    assert frame(owner, unfinished, 0).status_code == 404


# --- in the browser --------------------------------------------------------------------------------------------


@pytest.fixture
def people_by_name(owner, teammate, reviewer, admin, outsider) -> dict:
    return {"owner": owner, "teammate": teammate, "reviewer": reviewer, "admin": admin, "outsider": outsider}


SLOW = 20_000  # ms: what an expectation waits on a busy machine (it passes as soon as it holds)
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "var" / "screenshots"
)  # looked at by hand; not committed


def current_time(page) -> float:
    return page.locator("#viewer-video").evaluate("v => v.currentTime")


@pytest.mark.browser
def test_a_reviewer_watches_steps_comments_and_approves_with_the_keyboard(
    page, live_server, reviewer, owner, team
):
    from conftest import wait_for
    from playwright.sync_api import expect

    clips = [finished_clip(owner, team, f"clip {i}: a paper boat", age=i, real=True) for i in range(3)]
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page, live_server, reviewer)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 760})
    page.goto(f"{live_server.url}{reverse('gallery')}?scope=team")
    page.evaluate("window.sameDocument = true")
    page.locator(f"#clip-{clips[0].pk} [data-testid=open-viewer]").click()
    page.wait_for_load_state("domcontentloaded")  # viewer.js (deferred) listens for keys from here on
    expect(page.locator("[data-testid=viewer-prompt]")).to_have_text("clip 0: a paper boat", timeout=SLOW)
    assert f"/renders/{clips[0].pk}/view/" in page.url and "list=gallery" in page.url
    page.evaluate("window.sameDocument = true")  # gone if anything below loads a page

    page.keyboard.press("ArrowRight")
    expect(page.locator("[data-testid=viewer-prompt]")).to_have_text("clip 1: a paper boat", timeout=SLOW)
    wait_for(lambda: f"/renders/{clips[1].pk}/view/" in page.url, timeout=10)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("[data-testid=viewer-prompt]")).to_have_text("clip 0: a paper boat", timeout=SLOW)
    wait_for(lambda: f"/renders/{clips[0].pk}/view/" in page.url, timeout=10)

    # Frame steps: pause, one frame on, one more: 1/24 s each.
    video = page.locator("#viewer-video")
    video.evaluate("v => { v.muted = true; }")
    wait_for(lambda: video.evaluate("v => v.readyState") >= 1, timeout=15)
    video.evaluate("v => v.pause()")  # whatever autoplay did
    page.keyboard.press(" ")
    wait_for(lambda: not video.evaluate("v => v.paused"), timeout=10)
    page.keyboard.press(" ")
    wait_for(lambda: video.evaluate("v => v.paused"), timeout=10)
    video.evaluate("v => { v.currentTime = 0.5; }")
    wait_for(lambda: abs(current_time(page) - 0.5) < 0.001, timeout=10)
    page.keyboard.press(".")
    wait_for(lambda: abs(current_time(page) - (13 / 24 + 0.001)) < 0.002, timeout=10)
    page.keyboard.press(".")
    wait_for(lambda: abs(current_time(page) - (14 / 24 + 0.001)) < 0.002, timeout=10)
    page.keyboard.press(",")
    wait_for(lambda: abs(current_time(page) - (13 / 24 + 0.001)) < 0.002, timeout=10)
    expect(page.locator("[data-frame-number]")).to_have_text("13")

    # S: the frame on screen, as a PNG from the server (the real frame 13, not a screenshot of the player).
    with page.expect_download() as download:
        page.keyboard.press("s")
    assert download.value.suggested_filename.endswith("-0.543s.png")
    saved = Image.open(download.value.path()).convert("RGB")
    assert saved.size == (160, 90)
    assert sum(ImageStat.Stat(ImageChops.difference(saved, decoded_frames(clips[0])[13])).mean) == 0

    # M: a comment at the moment on screen.
    page.keyboard.press("m")
    expect(page.locator("#viewer-comment-text")).to_be_focused()
    expect(page.locator("[data-comment-at]")).to_have_text("0:00.5")
    page.keyboard.type("The boat <tips> here")
    page.keyboard.press("Enter")
    expect(page.locator("#comments")).to_contain_text("The boat <tips> here", timeout=SLOW)
    expect(page.locator("#viewer-comment")).to_be_hidden(timeout=SLOW)
    assert Comment.objects.get(render=clips[0]).at_seconds == 0.5

    # A: approved, and on to the next clip.
    page.keyboard.press("a")
    expect(page.locator("[data-testid=viewer-prompt]")).to_have_text("clip 1: a paper boat", timeout=SLOW)
    wait_for(lambda: f"/renders/{clips[1].pk}/view/" in page.url, timeout=10)
    assert Render.objects.get(pk=clips[0].pk).review_state == ReviewState.APPROVED
    page.screenshot(path=str(SCREENSHOTS / "viewer.png"))

    # Esc: back to the gallery it came from.
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(r"/gallery/\?scope=team$"))
    expect(page.locator(f"#clip-{clips[0].pk}")).to_be_visible(timeout=SLOW)
    assert problems == []


@pytest.mark.browser
def test_a_reviewer_gets_through_fifty_clips_from_the_queue_without_the_mouse(
    page, live_server, reviewer, owner, team
):
    from conftest import wait_for
    from playwright.sync_api import expect

    waiting = [finished_clip(owner, team, f"queued {i:02d}", age=100 - i) for i in range(50)]  # oldest first
    log_in(page, live_server, reviewer)
    page.goto(live_server.url + viewer_url(waiting[0], "list=review"))
    page.evaluate("window.sameDocument = true")
    decisions = {"a": ReviewState.APPROVED, "c": ReviewState.CHANGES_REQUESTED, "r": ReviewState.REJECTED}
    keys = "acr" * 17
    for i, render in enumerate(waiting):
        expect(page.locator("[data-testid=viewer-prompt]")).to_have_text(f"queued {i:02d}", timeout=SLOW)
        wait_for(lambda render=render: f"/renders/{render.pk}/view/" in page.url, timeout=10)
        page.keyboard.press(keys[i])
    expect(page.locator("#toasts")).to_contain_text("That was the last clip of this list", timeout=SLOW)
    assert page.evaluate("window.sameDocument") is True
    states = dict(Render.objects.filter(pk__in=[r.pk for r in waiting]).values_list("pk", "review_state"))
    assert [states[r.pk] for r in waiting] == [decisions[keys[i]] for i in range(50)]
    expect(page.locator("#to-review-badge")).to_have_text(
        "", timeout=SLOW
    )  # the queue is empty: the badge is gone


@pytest.mark.browser
def test_a_member_who_does_not_review_gets_a_toast_for_a_and_f_goes_full_screen(
    page, live_server, teammate, owner, team
):
    from conftest import wait_for
    from playwright.sync_api import expect

    clip = finished_clip(owner, team, "a member's look", real=True)
    log_in(page, live_server, teammate)
    page.goto(live_server.url + viewer_url(clip, "list=gallery"))
    expect(page.locator("[data-testid=viewer-prompt]")).to_have_text("a member's look", timeout=SLOW)
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("not yours to review", timeout=SLOW)
    assert not clip.reviews.exists()
    page.keyboard.press("f")
    wait_for(lambda: page.evaluate("document.fullscreenElement && document.fullscreenElement.id") == "viewer")
    page.keyboard.press("f")
    wait_for(lambda: page.evaluate("document.fullscreenElement") is None)


# --- pinned query counts ---------------------------------------------------------------------------------------

# The viewer, for a reviewer, whatever the number of clips and comments:
#  1 session, 2 user, 3 render (access: for_user, with its author, team and last reviewer), 4 memberships with
#  teams (access.viewer: the reviewer teams, for the list from the queue, the "to review" link and the review
#  buttons, and the active team), the list: from the gallery 5 the team picked (the active team), from the queue
#  nothing more; then the previous and the next clip's id (one indexed query each), the comments with their
#  authors, then, lazily, as the page reads it, the count of renders to review
VIEWER_QUERIES = {"gallery": 9, "review": 8}


@pytest.mark.parametrize("n", [1, 6])
@pytest.mark.parametrize("listed", ["gallery", "review"])
def test_the_viewer_costs_the_same_queries_whatever_the_list_and_the_comments(
    reviewer, owner, team, n, listed, django_assert_num_queries
):
    shown = [finished_clip(owner, team, f"clip {i}", age=i) for i in range(n + 2)]
    for i in range(n):
        Comment.objects.create(render=shown[1], author=owner, text=f"c{i}", at_seconds=i / 4 or None)
    browser = client_for(reviewer)
    with django_assert_num_queries(VIEWER_QUERIES[listed]):
        response = browser.get(viewer_url(shown[1], f"list={listed}"))
    assert response.status_code == 200 and response.content.decode().count('class="comment"') == n
