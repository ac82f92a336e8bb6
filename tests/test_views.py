"""The studio page and its fragments: estimate, submit, poll, cancel, clips; access, methods, CSRF, escaping."""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import HTMX
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, reverse
from django.utils import timezone
from PIL import Image

from studio import urls
from studio.models import Render, State
from tests.conftest import make_clip
from tests.fixtures import make_render

PROMPT = "A red apple rolls slowly across a wooden table"
EVIL = '<script>alert(1)</script> <img src=x onerror=alert(2)> hx-get="/x"'


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 1 s, 160x120 H.264 MP4."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", size="160x120", seconds=1)


@pytest.fixture
def finished(owner, media, clip) -> Render:
    """Olivia's completed render, with its clip and poster on disk."""
    render = make_render(
        owner, State.COMPLETED, video_width=160, video_height=120, billed_cost=Decimal("0.5")
    )
    folder = media / "renders" / str(render.pk)
    folder.mkdir(parents=True)
    shutil.copy(clip, folder / "clip.mp4")
    Image.new("RGB", (160, 120), "red").save(folder / "poster.jpg", "JPEG")
    render.video = f"renders/{render.pk}/clip.mp4"
    render.poster = f"renders/{render.pk}/poster.jpg"
    render.save()
    return render


def sora2(**fields) -> dict:
    return {"model": "sora2", "prompt": PROMPT, "duration_seconds": "5", "size": "1280x720", **fields}


def pro(**fields) -> dict:
    return {"model": "sora-2-pro", "prompt": PROMPT, "duration_seconds": "8", "resolution": "1080p", **fields}


def text(response) -> str:
    return b"".join(response.streaming_content if response.streaming else [response.content]).decode()


def estimate_total(html: str) -> str:
    return re.search(r'data-testid="estimate-total">([^<]*)<', html).group(1)


def oob_error(html: str, name: str) -> str | None:
    found = re.search(
        rf'<div class="field-error" id="err-{name}" role="alert" hx-swap-oob="true">([^<]*)</div>', html
    )
    return found.group(1) if found else None


def opening_tag(html: str, element_id: str) -> str:
    """The opening tag of the element with this id."""
    return re.search(rf'<[a-z]+ id="{re.escape(element_id)}"[^>]*>', html).group(0)


def poller_since(html: str) -> str:
    return re.search(r'<div id="poll"[^>]*><input type="hidden" name="since" value="([^"]*)"', html).group(1)


def ago(seconds: float) -> str:
    return (timezone.now() - timedelta(seconds=seconds)).isoformat()


# --- the page ---------------------------------------------------------------------------------------------


def test_studio_page_shows_the_form_the_estimate_and_the_emulator_banner(owner_client, settings):
    settings.USING_EMULATOR = True
    html = owner_client.get("/").content.decode()
    assert 'id="studio-form"' in html
    assert estimate_total(html) == "$0.50"
    assert "5 s × $0.10/s" in html
    assert "Emulator mode" in html


def test_no_emulator_banner_with_a_real_gateway(owner_client, settings):
    settings.USING_EMULATOR = False
    assert "Emulator mode" not in owner_client.get("/").content.decode()


def test_studio_page_lists_only_my_renders_and_polls_while_one_is_in_flight(owner_client, owner, outsider):
    mine = make_render(owner, State.RUNNING, progress=40)
    theirs = make_render(outsider, State.RUNNING)
    html = owner_client.get("/").content.decode()
    assert f'id="render-{mine.pk}"' in html
    assert str(theirs.pk) not in html
    assert 'hx-get="/renders/poll/"' in opening_tag(html, "poll")


def test_studio_page_polls_gently_when_nothing_is_in_flight_so_renders_made_elsewhere_appear(
    owner_client, owner
):
    make_render(owner, State.COMPLETED)
    html = owner_client.get("/").content.decode()
    assert 'hx-get="/renders/poll/" hx-trigger="every 5s, studio:wake from:body"' in opening_tag(html, "poll")
    assert html.count('id="poll"') == 1 and 'hx-get="/live/"' not in html  # one poller per page: the studio's


def test_studio_page_query_count_does_not_grow_with_renders(owner_client, owner):
    make_render(owner, State.RUNNING)
    with CaptureQueriesContext(connection) as one:
        owner_client.get("/")
    for _ in range(5):
        make_render(owner, State.FAILED, error="nope")
    with CaptureQueriesContext(connection) as six:
        owner_client.get("/")
    # session, user, renders, gateway alerts (+ savepoints, if any): the same whatever the number of cards
    assert len(six) == len(one)


# --- the live estimate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "total", "detail"),
    [
        (sora2(duration_seconds="15"), "$1.50", "15 s × $0.10/s · Sora 2"),
        (pro(), "$1.85", "8 s × $0.23125/s · Sora 2 Pro 1080p"),
        (pro(duration_seconds="10", resolution="720p"), "$1.39", "10 s × $0.13875/s · Sora 2 Pro 720p"),
    ],
)
def test_estimate_fragment_prices_each_model(owner_client, data, total, detail):
    response = owner_client.post("/estimate/", data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="estimate"')
    assert 'id="studio-form"' not in html
    assert estimate_total(html) == total
    assert detail in " ".join(html.split())
    assert oob_error(html, "duration_seconds") == ""


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (sora2(duration_seconds="7"), "duration_seconds", "Sora 2 (draft) renders 5, 10 or 15 seconds."),
        (pro(duration_seconds="21"), "duration_seconds", "Sora 2 Pro renders 1 to 20 seconds."),
        (
            pro(resolution="4k"),
            "resolution",
            "Select a valid choice. 4k is not one of the available choices.",
        ),
        (pro(seed="-1"), "seed", "Ensure this value is greater than or equal to 0."),
        (
            sora2(prompt="\x1b[31m"),
            "prompt",
            "The prompt contains control characters (e.g. U+001B); remove them.",
        ),
    ],
)
def test_estimate_swaps_each_field_error_next_to_its_field(owner_client, data, field, message):
    html = owner_client.post("/estimate/", data, **HTMX).content.decode()
    assert oob_error(html, field) == message
    assert all(
        oob_error(html, other) == "" for other in ("size", "aspect_ratio", "style_preset") if other != field
    )


def test_the_element_that_listens_for_changes_is_not_the_one_swapped(owner_client):
    # htmx wires up swapped-in content only when it settles: a listener that replaced itself would miss changes.
    page = owner_client.get("/").content.decode()
    listener = re.search(r'<div [^>]*hx-post="/estimate/"[^>]*>', page).group(0)
    assert 'hx-target="#estimate"' in listener and 'id="estimate"' not in listener
    fragment = owner_client.post("/estimate/", sora2(), **HTMX).content.decode()
    assert "hx-post" not in fragment and "hx-trigger" not in fragment


def test_estimate_is_withheld_while_the_duration_is_wrong(owner_client):
    html = owner_client.post("/estimate/", sora2(duration_seconds="abc"), **HTMX).content.decode()
    assert "data-testid" not in html
    assert "Fix the highlighted fields" in html
    assert oob_error(html, "duration_seconds") == "Enter a whole number."


# --- submit -----------------------------------------------------------------------------------------------


def test_submit_returns_the_new_card_a_fresh_form_and_a_live_poller(owner_client, owner):
    token = str(uuid.uuid4())
    since = ago(3)
    response = owner_client.post("/renders/", sora2(client_token=token, since=since), **HTMX)
    html = response.content.decode()
    render = Render.objects.get(user=owner)
    assert response.status_code == 200
    assert render.state == State.PENDING and render.client_token == uuid.UUID(token)
    assert html.lstrip().startswith(f'<article id="render-{render.pk}"')
    assert "hx-swap-oob" not in opening_tag(html, f"render-{render.pk}")  # it goes where the form targets
    form_tag = opening_tag(html, "studio-form")
    assert 'hx-swap-oob="true"' in form_tag
    new_token = re.search(r'name="client_token" value="([^"]+)"', html).group(1)
    assert new_token != token and uuid.UUID(new_token)
    poller = opening_tag(html, "poll")
    assert 'hx-swap-oob="true"' in poller and 'hx-get="/renders/poll/' in poller
    # the restarted poller resumes from the page's poller's `since`, so no change in between is skipped
    assert poller_since(html) == since


def test_submit_without_a_since_starts_the_poller_now(owner_client):
    before = timezone.now()
    html = owner_client.post("/renders/", sora2(since="garbage"), **HTMX).content.decode()
    assert datetime.fromisoformat(poller_since(html)) >= before


def test_double_submit_with_the_same_token_creates_one_render_and_one_card(owner_client, owner):
    token = str(uuid.uuid4())
    first = owner_client.post("/renders/", sora2(client_token=token), **HTMX).content.decode()
    second = owner_client.post("/renders/", sora2(client_token=token), **HTMX).content.decode()
    render = Render.objects.get(user=owner)
    assert f'id="render-{render.pk}"' in first and f'id="render-{render.pk}"' in second
    # the repeat replaces the card in place rather than adding a second card with the same id
    assert 'hx-swap-oob="true"' in opening_tag(second, f"render-{render.pk}")


def test_invalid_submit_returns_the_form_with_errors_retargeted(owner_client):
    response = owner_client.post("/renders/", sora2(duration_seconds="7", prompt=""), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#studio-form"
    assert response["HX-Reswap"] == "outerHTML"
    assert html.lstrip().startswith('<form id="studio-form"')
    assert "hx-swap-oob" not in opening_tag(html, "studio-form")
    assert "Sora 2 (draft) renders 5, 10 or 15 seconds." in html
    assert "This field is required." in html
    assert Render.objects.count() == 0


def test_invalid_submit_without_htmx_is_the_page_with_errors(owner_client):
    response = owner_client.post("/renders/", sora2(duration_seconds="7"))
    assert response.status_code == 400
    assert "Sora 2 (draft) renders 5, 10 or 15 seconds." in response.content.decode()


def test_submit_without_htmx_redirects_to_the_studio(owner_client, owner):
    response = owner_client.post("/renders/", pro(seed="7", style_preset="anime"))
    assert response.status_code == 302 and response["Location"] == "/"
    render = Render.objects.get(user=owner)
    assert render.params == {
        "duration_seconds": 8,
        "resolution": "1080p",
        "aspect_ratio": "16:9",
        "seed": 7,
        "style_preset": "anime",
    }
    assert render.estimated_cost == Decimal("1.85")


# --- poll -------------------------------------------------------------------------------------------------


def test_poll_returns_the_cards_changed_since_out_of_band(owner_client, owner, outsider):
    stale = make_render(owner, State.RUNNING, progress=10)
    fresh = make_render(owner, State.COMPLETED)
    theirs = make_render(outsider, State.COMPLETED)
    Render.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    cursor = {"since": ago(60), "floor": ago(60), "shown": [str(fresh.pk)]}  # a page that shows `fresh`
    response = owner_client.get("/renders/poll/", cursor, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200  # one render is still in flight
    assert 'hx-swap-oob="true"' in opening_tag(html, f"render-{fresh.pk}")
    assert str(stale.pk) not in html
    assert str(theirs.pk) not in html
    assert html.lstrip().startswith('<div id="poll" hx-get=')


def test_poll_keeps_the_page_live_at_a_gentle_rate_when_nothing_is_in_flight(owner_client, owner):
    done = make_render(owner, State.COMPLETED)
    response = owner_client.get("/renders/poll/", {"since": ago(60)}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200  # never 286: a render started elsewhere must still appear
    assert f'id="render-{done.pk}"' in html  # the last change still arrives
    poller = opening_tag(html, "poll")
    assert 'hx-trigger="every 5s, studio:wake from:body"' in poller and 'data-in-flight="0"' in poller


def test_poll_asks_every_second_while_a_render_is_in_flight(owner_client, owner):
    make_render(owner, State.RUNNING)
    poller = opening_tag(
        owner_client.get("/renders/poll/", {"since": ago(60)}, **HTMX).content.decode(), "poll"
    )
    assert 'hx-trigger="every 1s, studio:wake from:body"' in poller and 'data-in-flight="1"' in poller


@pytest.mark.parametrize(
    "since",
    [
        None,
        "",
        "yesterday",
        "2026-01-01T00:00:00",  # no time zone
        "2026-01-01T00:00:00 00:00",  # an unencoded "+" arrives as a space
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "2026-13-01T00:00:00+00:00",
    ],
)
def test_poll_with_a_bad_since_is_400(owner_client, since):
    query = {} if since is None else {"since": since}
    assert owner_client.get("/renders/poll/", query, **HTMX).status_code == 400


# --- cancel -----------------------------------------------------------------------------------------------


def test_cancel_fragment_returns_the_cancelled_card_and_a_toast(owner_client, owner):
    render = make_render(owner, State.PENDING)
    since = ago(2)
    response = owner_client.post(f"/renders/{render.pk}/cancel/", {"since": since}, **HTMX)
    html = response.content.decode()
    render.refresh_from_db()
    assert response.status_code == 200
    assert render.state == State.CANCELLED and render.billed_cost == 0
    assert html.lstrip().startswith(f'<article id="render-{render.pk}"')
    assert 'data-state="cancelled"' in html
    assert "nothing was billed" in html
    assert 'hx-swap-oob="beforeend:#toasts"' in html
    assert "Cancelled before it reached the gateway: nothing was billed." in html
    assert poller_since(html) == since


def test_cancel_button_sends_the_pollers_cursor_and_waits_for_a_poll_in_flight(owner_client, owner):
    render = make_render(owner, State.QUEUED)
    html = owner_client.get(f"/renders/{render.pk}/").content.decode()
    assert re.search(
        r'<button class="cancel" hx-post="[^"]+"[^>]*hx-include="#poll" hx-sync="#poller:queue all"', html
    )


def test_cancelling_a_finished_render_says_it_is_too_late(owner_client, finished):
    html = owner_client.post(f"/renders/{finished.pk}/cancel/", **HTMX).content.decode()
    finished.refresh_from_db()
    assert finished.state == State.COMPLETED
    assert "Too late to cancel: the render is completed." in html


# --- clips ------------------------------------------------------------------------------------------------


def test_card_of_a_finished_render_plays_its_clip(owner_client, finished):
    html = owner_client.get(f"/renders/{finished.pk}/").content.decode()
    assert f'src="/renders/{finished.pk}/video.mp4"' in html
    assert f'poster="/renders/{finished.pk}/poster.jpg"' in html
    assert f'href="/renders/{finished.pk}/video.mp4?download=1"' in html


def test_video_is_served_whole_without_a_range(owner_client, finished, clip):
    response = owner_client.get(f"/renders/{finished.pk}/video.mp4")
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"
    assert b"".join(response.streaming_content) == clip.read_bytes()


def test_video_range_is_206_with_content_range(owner_client, finished, clip):
    size = clip.stat().st_size
    response = owner_client.get(f"/renders/{finished.pk}/video.mp4", HTTP_RANGE="bytes=100-199")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{size}"
    assert b"".join(response.streaming_content) == clip.read_bytes()[100:200]


def test_video_range_past_the_end_is_416(owner_client, finished, clip):
    size = clip.stat().st_size
    response = owner_client.get(f"/renders/{finished.pk}/video.mp4", HTTP_RANGE=f"bytes={size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"


def test_video_download_is_an_attachment(owner_client, finished):
    response = owner_client.get(f"/renders/{finished.pk}/video.mp4", {"download": "1"})
    assert response["Content-Disposition"].startswith("attachment;")
    assert f"studio-sora2-{str(finished.pk)[:8]}.mp4" in response["Content-Disposition"]


def test_poster_is_a_jpeg(owner_client, finished):
    response = owner_client.get(f"/renders/{finished.pk}/poster.jpg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"


def test_no_clip_yet_is_404(owner_client, owner):
    render = make_render(owner, State.RUNNING)
    assert owner_client.get(f"/renders/{render.pk}/video.mp4").status_code == 404
    assert owner_client.get(f"/renders/{render.pk}/poster.jpg").status_code == 404


def test_a_clip_missing_on_disk_is_404(owner_client, finished, media):
    (media / finished.video.name).unlink()
    assert owner_client.get(f"/renders/{finished.pk}/video.mp4").status_code == 404


# --- access -----------------------------------------------------------------------------------------------

RENDER_URLS = {"card": "get", "cancel": "post", "video": "get", "poster": "get"}
LIST_URLS = {"studio": "get", "estimate": "post", "submit": "post", "poll": "get", "older": "get"}


def test_the_matrix_covers_every_url_of_the_studio_page():
    # The studio page's own views; tests/test_access_matrix.py covers every URL of the whole site.
    studio_page = [
        p
        for p in urls.urlpatterns
        if isinstance(p, URLPattern) and p.callback.__module__ == "studio.views.studio"
    ]
    with_render_id = {p.name for p in studio_page if "render_id" in str(p.pattern)}
    assert with_render_id == set(RENDER_URLS)
    assert {p.name for p in studio_page} == set(RENDER_URLS) | set(LIST_URLS)


def request(client, method: str, url: str, **extra):
    data = {"since": ago(5)} if method == "get" else sora2()
    return getattr(client, method)(url, data, **extra)


def assert_sent_to_login(response, htmx: bool) -> None:
    """Anonymous pages redirect to login; anonymous htmx requests get a full-page HX-Redirect there instead."""
    if htmx:
        assert response.status_code == 204
        assert response["HX-Redirect"].startswith("/login/?next=")
    else:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("extra", [{}, HTMX], ids=["page", "htmx"])
@pytest.mark.parametrize("name", RENDER_URLS)
def test_render_urls_owner_sees_outsider_gets_404_anonymous_logs_in(
    name, extra, finished, owner_client, outsider_client
):
    url = reverse(name, args=[finished.pk])
    method = RENDER_URLS[name]
    assert request(owner_client, method, url, **extra).status_code == 200
    assert request(outsider_client, method, url, **extra).status_code == 404
    assert_sent_to_login(request(Client(), method, url, **extra), htmx=bool(extra))


@pytest.mark.parametrize("extra", [{}, HTMX], ids=["page", "htmx"])
@pytest.mark.parametrize("name", LIST_URLS)
def test_list_urls_show_each_user_only_their_own(name, extra, finished, owner_client, outsider_client):
    url = reverse(name)
    method = LIST_URLS[name]
    assert 200 <= request(owner_client, method, url, **extra).status_code < 400
    theirs = request(outsider_client, method, url, **extra)
    assert 200 <= theirs.status_code < 400
    assert str(finished.pk) not in text(theirs)
    assert_sent_to_login(request(Client(), method, url, **extra), htmx=bool(extra))


def test_an_unknown_render_is_404(owner_client):
    assert owner_client.get(f"/renders/{uuid.uuid4()}/").status_code == 404
    assert owner_client.get("/renders/not-a-uuid/").status_code == 404


@pytest.mark.parametrize(("name", "method"), [*RENDER_URLS.items(), *LIST_URLS.items()])
def test_the_wrong_method_is_405(name, method, finished, owner_client):
    url = reverse(name, args=[finished.pk]) if name in RENDER_URLS else reverse(name)
    wrong = "get" if method == "post" else "post"
    assert getattr(owner_client, wrong)(url).status_code == 405
    finished.refresh_from_db()
    assert finished.state == State.COMPLETED


@pytest.fixture
def csrf_client(owner) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.mark.parametrize("name", ["submit", "estimate", "cancel"])
def test_a_post_without_csrf_token_is_403_and_says_the_form_was_stale(name, csrf_client, owner):
    render = make_render(owner, State.PENDING)
    url = reverse(name, args=[render.pk]) if name == "cancel" else reverse(name)
    page = csrf_client.post(url, sora2())
    fragment = csrf_client.post(url, sora2(), **HTMX)
    assert page.status_code == fragment.status_code == 403
    assert "This form was stale" in page.content.decode()
    assert page["Content-Type"].startswith("text/html")
    assert fragment["Content-Type"].startswith("text/plain")
    assert fragment.content.decode().startswith("This form was stale or its security token was missing.")
    render.refresh_from_db()
    assert render.state == State.PENDING
    assert Render.objects.count() == 1


def test_a_post_with_the_pages_csrf_token_goes_through(csrf_client):
    page = csrf_client.get("/").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = csrf_client.post("/estimate/", sora2(), HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200


# --- escaping ---------------------------------------------------------------------------------------------


def assert_escaped(html: str) -> None:
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert 'hx-get="/x"' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "hx-get=&quot;/x&quot;" in html


def test_a_hostile_prompt_is_shown_escaped_everywhere(owner_client, owner):
    submitted = owner_client.post("/renders/", sora2(prompt=EVIL), **HTMX).content.decode()
    render = Render.objects.get(user=owner)
    assert render.prompt == EVIL
    assert_escaped(submitted)
    assert_escaped(owner_client.get("/").content.decode())
    assert_escaped(owner_client.get(f"/renders/{render.pk}/").content.decode())
    assert_escaped(owner_client.get("/renders/poll/", {"since": ago(60)}, **HTMX).content.decode())
    assert_escaped(
        owner_client.post("/renders/", sora2(prompt=EVIL, duration_seconds="7"), **HTMX).content.decode()
    )


def test_a_hostile_gateway_error_is_shown_escaped(owner_client, owner):
    render = make_render(owner, State.FAILED, error=EVIL)
    assert_escaped(owner_client.get(f"/renders/{render.pk}/").content.decode())


def test_an_unknown_page_says_so_in_the_studios_own_page(owner_client):
    response = owner_client.get("/renders/not-a-uuid/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode() and "Back to the studio" in response.content.decode()


def test_a_refusal_gives_its_reason_as_text_for_htmx(owner_client, teammate, team):
    clip = make_render(teammate, team=team)  # Olivia, a member, is no reviewer
    response = owner_client.post(f"/renders/{clip.pk}/review/", {"state": "approved"}, **HTMX)
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "Only the team's reviewers can review this render."
