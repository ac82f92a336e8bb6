"""The gallery: scopes, filters, search, sorts, cursor pagination, HTMX fragments, stars, tags and query counts."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import HTMX
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studio.actions.gallery import do_add_tag
from studio.gallery import PAGE_SIZE
from studio.models import Membership, Profile, Render, ReviewState, Star, State, Tag, Team
from tests import fixtures
from tests.conftest import make_clip
from tests.fixtures import client_for

GALLERY = "/gallery/"
CARD = re.compile(r'id="clip-([0-9a-f-]{36})"')
NEXT = re.compile(r'class="sentinel" hx-get="([^"]+)"')
_clock = [timezone.now() - timedelta(days=1)]


def make_render(author, **fields) -> Render:
    """The shared finished clip, but in the author's team (if any) and a second newer than the last one made
    here: the gallery orders by creation, and these tests need one answer for "newest first"."""
    _clock[0] += timedelta(seconds=1)
    team = Team.objects.filter(memberships__user=author).first()
    return fixtures.make_render(author, **{"team": team, "created_at": _clock[0], **fields})


def ids(response) -> list[str]:
    return CARD.findall(response.content.decode())


def next_url(response) -> str | None:
    found = NEXT.search(response.content.decode())
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def team_name() -> str:
    """Shown on every gallery page: `test_team_name_is_escaped` checks it."""
    return "Spring <i>launch</i>"


@pytest.fixture
def team(team, owner) -> Team:
    """Olivia's team, picked in her switcher (the query counts below read her profile)."""
    Profile.objects.create(user=owner, active_team=team)
    return team


# --- scopes ---------------------------------------------------------------------------------------------------


def test_team_gallery_shows_teammates_shared_clips_but_not_private_ones_or_outsiders(
    owner_client, owner, teammate, outsider
):
    mine = make_render(owner)
    shared = make_render(teammate, prompt="Tom shares this")
    private = make_render(teammate, prompt="Tom keeps this", private=True)
    foreign = make_render(outsider, prompt="Oscar's own")
    response = owner_client.get(GALLERY, {"scope": "team"})
    assert response.status_code == 200
    shown = ids(response)
    assert str(mine.pk) in shown and str(shared.pk) in shown
    assert str(private.pk) not in shown and str(foreign.pk) not in shown
    assert "Tom keeps this" not in response.content.decode()


def test_my_renders_are_only_my_own_clips_personal_ones_included(owner_client, owner, teammate, outsider):
    in_team = make_render(owner)
    personal = make_render(owner, team=None)
    make_render(teammate)
    make_render(outsider)
    assert set(ids(owner_client.get(GALLERY, {"scope": "mine"}))) == {str(in_team.pk), str(personal.pk)}


def test_default_scope_is_the_team_gallery_with_a_team_and_my_renders_without(
    client, owner, teammate, outsider
):
    shared = make_render(teammate)
    assert ids(client_for(owner).get(GALLERY)) == [str(shared.pk)]
    mine = make_render(outsider)
    response = client_for(outsider).get(GALLERY)
    assert ids(response) == [str(mine.pk)]
    assert 'aria-current="page">My renders' in response.content.decode()


def test_team_gallery_without_a_team_says_so(outsider_client, outsider):
    make_render(outsider)
    response = outsider_client.get(GALLERY, {"scope": "team"})
    assert response.status_code == 200
    assert ids(response) == []
    assert "You are not in a team yet" in response.content.decode()


def test_team_name_is_escaped(owner_client, team):
    page = owner_client.get(GALLERY).content.decode()
    assert "Spring &lt;i&gt;launch&lt;/i&gt;" in page and "<i>launch</i>" not in page


def test_a_member_removed_from_the_team_no_longer_sees_its_clips(owner, teammate, team):
    shared = make_render(owner)
    tom = client_for(teammate)
    assert ids(tom.get(GALLERY, {"scope": "team"})) == [str(shared.pk)]
    Membership.objects.filter(user=teammate).delete()
    assert ids(tom.get(GALLERY, {"scope": "team"})) == []


# --- filters and search ---------------------------------------------------------------------------------------


def test_only_completed_clips_by_default_and_any_state_on_request(owner_client, owner, team):
    done = make_render(owner)
    failed = make_render(owner, state=State.FAILED)
    running = make_render(owner, state=State.RUNNING)
    assert ids(owner_client.get(GALLERY)) == [str(done.pk)]
    assert ids(owner_client.get(GALLERY, {"state": "failed"})) == [str(failed.pk)]
    assert ids(owner_client.get(GALLERY, {"state": "all"})) == [str(running.pk), str(failed.pk), str(done.pk)]


def test_author_filter(owner_client, owner, teammate):
    make_render(owner)
    theirs = make_render(teammate)
    assert ids(owner_client.get(GALLERY, {"author": "tom"})) == [str(theirs.pk)]
    assert ids(owner_client.get(GALLERY, {"author": "nobody"})) == []


def test_model_filter(owner_client, owner, team):
    make_render(owner)
    pro = make_render(owner, model="sora-2-pro", params={"duration_seconds": 8, "resolution": "720p"})
    assert ids(owner_client.get(GALLERY, {"model": "sora-2-pro"})) == [str(pro.pk)]


def test_review_state_filter(owner_client, owner, team):
    make_render(owner)
    approved = make_render(owner, review_state=ReviewState.APPROVED)
    assert ids(owner_client.get(GALLERY, {"review": "approved"})) == [str(approved.pk)]


def test_starred_filter_is_per_user(owner_client, owner, teammate):
    starred = make_render(teammate)
    toms_only = make_render(teammate)
    make_render(teammate)
    Star.objects.create(user=owner, render=starred)
    Star.objects.create(user=teammate, render=toms_only)
    assert ids(owner_client.get(GALLERY, {"starred": "1"})) == [str(starred.pk)]
    assert len(ids(owner_client.get(GALLERY, {"starred": ""}))) == 3


def test_tag_filter(owner_client, owner, team):
    tagged = make_render(owner)
    other = make_render(owner)
    Tag.objects.create(render=tagged, name="spring-launch")
    Tag.objects.create(render=other, name="autumn")
    assert ids(owner_client.get(GALLERY, {"tag": "spring-launch"})) == [str(tagged.pk)]
    assert ids(owner_client.get(GALLERY, {"tag": "  spring-launch "})) == [str(tagged.pk)]


def test_search_in_prompt_text_ignores_case(owner_client, owner, team):
    apple = make_render(owner, prompt="A red APPLE on a table")
    make_render(owner, prompt="A drone shot over the sea")
    assert ids(owner_client.get(GALLERY, {"q": "apple"})) == [str(apple.pk)]
    assert ids(owner_client.get(GALLERY, {"q": "100%"})) == []  # % is a literal, not a wildcard


def test_filters_combine(owner_client, owner, teammate):
    hit = make_render(teammate, prompt="Neon city at night", review_state=ReviewState.APPROVED)
    make_render(teammate, prompt="Neon city at dawn")
    make_render(owner, prompt="Neon city at night", review_state=ReviewState.APPROVED)
    for item in Render.objects.all():
        Tag.objects.create(render=item, name="city")
    Star.objects.create(user=owner, render=hit)
    query = {
        "author": "tom",
        "q": "neon",
        "review": "approved",
        "tag": "city",
        "starred": "1",
        "model": "sora2",
    }
    assert ids(owner_client.get(GALLERY, query)) == [str(hit.pk)]


@pytest.mark.parametrize(
    "query",
    [
        {"sort": "price"},
        {"state": "done"},
        {"model": "sora3"},
        {"review": "maybe"},
        {"starred": "yes"},
        {"scope": "everyone"},
        {"author": "<script>"},
        {"author": "a" * 151},
        {"q": "x" * 201},
        {"q": "apple\x00"},
        {"tag": "t" * 41},
        {"tag": "bad\ntag"},
        {"cursor": "garbage"},
    ],
)
def test_bad_filter_values_are_400_with_a_message(owner_client, team, query):
    response = owner_client.get(GALLERY, query)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.strip()
    assert b"<script>" not in response.content


# --- sorting and cursor pagination ----------------------------------------------------------------------------


def test_sort_by_newest_cost_and_duration(owner_client, owner, team):
    old_cheap = make_render(owner, estimated_cost=Decimal("0.5000"), seconds=5)
    billed_high = make_render(
        owner, estimated_cost=Decimal("0.5000"), billed_cost=Decimal("3.0000"), seconds=10
    )
    estimate_mid = make_render(owner, estimated_cost=Decimal("2.0000"), seconds=15)
    assert ids(owner_client.get(GALLERY)) == [str(estimate_mid.pk), str(billed_high.pk), str(old_cheap.pk)]
    # The cost shown is the bill once there is one, else the estimate: $3 billed beats a $2 estimate.
    by_cost = ids(owner_client.get(GALLERY, {"sort": "cost"}))
    assert by_cost == [str(billed_high.pk), str(estimate_mid.pk), str(old_cheap.pk)]
    by_duration = ids(owner_client.get(GALLERY, {"sort": "duration"}))
    assert by_duration == [str(estimate_mid.pk), str(billed_high.pk), str(old_cheap.pk)]


def walk(client, query: dict, headers=HTMX) -> list[list[str]]:
    """Every page, following each page's sentinel as infinite scroll does."""
    pages = []
    response = client.get(GALLERY, query, **headers)
    while True:
        assert response.status_code == 200
        pages.append(ids(response))
        url = next_url(response)
        if url is None:
            return pages
        response = client.get(url, **HTMX)


@pytest.mark.parametrize("sort", ["newest", "cost", "duration"])
def test_infinite_scroll_visits_every_clip_once_in_order_even_with_ties(owner_client, owner, team, sort):
    # 60 clips in blocks of equal created_at, cost and duration: the id must break every tie.
    moment = timezone.now() - timedelta(hours=1)
    for i in range(60):
        make_render(
            owner,
            created_at=moment + timedelta(seconds=i // 7),
            estimated_cost=Decimal("0.5000") * (i % 4 + 1),
            billed_cost=Decimal("1.2500") if i % 5 == 0 else None,
            seconds=5 * (i % 3 + 1),
        )
    key = {"newest": "created_at", "cost": "shown_cost", "duration": "seconds"}[sort]
    expected = [
        str(r.pk) for r in sorted(Render.objects.all(), key=lambda r: (getattr(r, key), r.pk), reverse=True)
    ]
    pages = walk(owner_client, {"sort": sort})
    assert [len(page) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 60 - 2 * PAGE_SIZE]
    assert [pk for page in pages for pk in page] == expected


def test_next_page_link_keeps_the_filters(owner_client, owner, team):
    for _ in range(PAGE_SIZE + 1):
        Tag.objects.create(render=make_render(owner, prompt="Neon sign"), name="neon")
    make_render(owner, prompt="Neon, untagged")
    response = owner_client.get(GALLERY, {"q": "neon", "tag": "neon", "sort": "cost", "author": ""}, **HTMX)
    query = parse_qs(urlsplit(next_url(response)).query)
    assert query["q"] == ["neon"] and query["tag"] == ["neon"] and query["sort"] == ["cost"]
    assert "author" not in query  # empty values are dropped
    assert query["scope"] == ["team"]  # the default scope, written out
    assert len(ids(owner_client.get(next_url(response), **HTMX))) == 1


def test_a_clip_added_while_scrolling_neither_repeats_nor_shifts_the_next_page(owner_client, owner, team):
    for _ in range(PAGE_SIZE + 5):
        make_render(owner)
    first = owner_client.get(GALLERY, **HTMX)
    make_render(owner)  # newer than all: belongs before page one, not in page two
    second = ids(owner_client.get(next_url(first), **HTMX))
    assert len(second) == 5 and not set(second) & set(ids(first))


def test_tampered_cursor_is_400(owner_client, owner, team):
    for _ in range(PAGE_SIZE + 1):
        make_render(owner)
    url = next_url(owner_client.get(GALLERY, **HTMX))
    cursor = parse_qs(urlsplit(url).query)["cursor"][0]
    value, signature = cursor.rsplit(":", 1)
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB") + ":" + signature
    assert owner_client.get(GALLERY, {"cursor": forged}, **HTMX).status_code == 400
    # A genuine cursor made for another sort order is refused too, never misread.
    assert owner_client.get(GALLERY, {"cursor": cursor, "sort": "cost"}, **HTMX).status_code == 400
    assert owner_client.get(GALLERY, {"cursor": cursor}, **HTMX).status_code == 200


# --- HTMX fragments -------------------------------------------------------------------------------------------


def test_htmx_request_gets_only_the_page_of_cards(owner_client, owner, team):
    for _ in range(PAGE_SIZE + 1):
        make_render(owner)
    response = owner_client.get(GALLERY, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert len(ids(response)) == PAGE_SIZE
    assert "<html" not in body and 'id="gallery-filters"' not in body and 'id="gallery-grid"' not in body
    assert 'hx-trigger="revealed" hx-swap="outerHTML"' in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_full_page_has_the_filter_bar_and_the_grid(owner_client, owner, team):
    make_render(owner)
    body = owner_client.get(GALLERY).content.decode()
    assert (
        'id="gallery-filters"' in body
        and 'hx-push-url="true"' in body
        and 'hx-target="#gallery-grid"' in body
    )
    assert 'id="gallery-grid"' in body and "studio/gallery.js" in body


def test_history_restore_gets_the_whole_page(owner_client, owner, team):
    make_render(owner)
    response = owner_client.get(GALLERY, **HTMX, HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert 'id="gallery-filters"' in response.content.decode()


def test_card_shows_poster_preview_badges_author_duration_and_cost(owner_client, owner, teammate):
    item = make_render(
        teammate,
        prompt='<img src=x onerror=alert(1)> "quoted"',
        billed_cost=Decimal("1.5000"),
        seconds=10,
        poster="renders/x/poster.jpg",
        video="renders/x/clip.mp4",
    )
    body = owner_client.get(GALLERY).content.decode()
    assert f'src="{reverse("poster", args=[item.pk])}"' in body
    assert f'data-preview="{reverse("video", args=[item.pk])}"' in body
    assert f'href="{reverse("detail", args=[item.pk])}"' in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "<img src=x" not in body
    assert 'data-testid="author">tom<' in body and ">10 s<" in body and ">$1.50<" in body
    assert "Sora 2" in body and "Completed" in body and "Needs review" in body


def test_reviewers_get_review_buttons_on_cards_members_do_not(owner, teammate, reviewer):
    shared = make_render(teammate)
    private = make_render(reviewer, private=True)
    review_url = reverse("review", args=[shared.pk])
    as_reviewer = client_for(reviewer).get(GALLERY, {"scope": "team"})
    assert review_url in as_reviewer.content.decode()
    assert reverse("review", args=[private.pk]) not in as_reviewer.content.decode()
    assert review_url not in client_for(owner).get(GALLERY).content.decode()


# --- stars ----------------------------------------------------------------------------------------------------


def test_star_toggles_and_answers_with_the_star_button(owner_client, owner, teammate):
    item = make_render(teammate)
    url = reverse("star", args=[item.pk])
    on = owner_client.post(url, **HTMX)
    assert on.status_code == 200
    assert f'id="star-{item.pk}"' in on.content.decode() and 'aria-pressed="true"' in on.content.decode()
    assert Star.objects.filter(user=owner, render=item).exists()
    assert 'aria-pressed="true"' in owner_client.get(GALLERY).content.decode()
    off = owner_client.post(url, **HTMX)
    assert 'aria-pressed="false"' in off.content.decode()
    assert not Star.objects.exists()


def test_stars_need_post(owner_client, owner, team):
    assert owner_client.get(reverse("star", args=[make_render(owner).pk])).status_code == 405


# --- tags -----------------------------------------------------------------------------------------------------


def test_tags_are_added_once_stripped_and_removed(owner_client, owner, teammate):
    item = make_render(teammate)
    added = owner_client.post(reverse("tag_add", args=[item.pk]), {"name": "  Spring launch  "}, **HTMX)
    assert added.status_code == 200 and f'id="tags-{item.pk}"' in added.content.decode()
    owner_client.post(reverse("tag_add", args=[item.pk]), {"name": "Spring launch"}, **HTMX)
    assert list(Tag.objects.values_list("name", "created_by")) == [("Spring launch", owner.pk)]
    assert "#Spring launch" in owner_client.get(GALLERY).content.decode()
    removed = owner_client.post(reverse("tag_remove", args=[item.pk, "Spring launch"]), **HTMX)
    assert removed.status_code == 200 and "Spring launch" not in removed.content.decode()
    assert not Tag.objects.exists()
    again = owner_client.post(reverse("tag_remove", args=[item.pk, "Spring launch"]), **HTMX)
    assert again.status_code == 200


def test_tags_are_shown_escaped_and_removable_whatever_their_characters(owner_client, owner, team):
    item = make_render(owner)
    for name in ("<b>x</b>", "Q3/2025", "100% & more? #1", "..."):
        response = owner_client.post(reverse("tag_add", args=[item.pk]), {"name": name}, **HTMX)
        assert response.status_code == 200
    page = owner_client.get(GALLERY).content.decode()
    assert "#&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "tag=%3Cb%3Ex%3C/b%3E" in page  # the tag's filter link
    for name in ("<b>x</b>", "Q3/2025", "100% & more? #1", "..."):
        remove = re.search(r'hx-post="([^"]+)"[^>]*aria-label="Remove tag ' + re.escape(_escaped(name)), page)
        assert remove, name
        assert owner_client.post(remove.group(1).replace("&amp;", "&"), **HTMX).status_code == 200
    assert not Tag.objects.exists()


def _escaped(text: str) -> str:
    from django.utils.html import escape

    return escape(text)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("   ", "A tag needs a name."),
        ("t" * 41, "A tag is at most 40 characters."),
        ("line\nbreak", "A tag cannot contain control characters."),
        ("bell\x07", "A tag cannot contain control characters."),
        # Parts of a URL path that browsers resolve or proxies merge: the tag could not be removed.
        ("..", "A tag cannot start or end with"),
        ("a/../b", "A tag cannot start or end with"),
        ("/campaign", "A tag cannot start or end with"),
        ("a//b", "A tag cannot start or end with"),
    ],
)
def test_bad_tag_names_change_nothing_and_say_why_in_a_toast(owner_client, owner, team, name, message):
    item = make_render(owner)
    response = owner_client.post(reverse("tag_add", args=[item.pk]), {"name": name}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="tags-{item.pk}"' in body
    assert 'hx-swap-oob="beforeend:#toasts"' in body and message in body
    assert not Tag.objects.exists()


def test_a_clip_has_at_most_twenty_tags(owner_client, owner, team):
    item = make_render(owner)
    Tag.objects.bulk_create([Tag(render=item, name=f"t{i}") for i in range(20)])
    response = owner_client.post(reverse("tag_add", args=[item.pk]), {"name": "one more"}, **HTMX)
    assert "at most 20 tags" in response.content.decode()
    assert Tag.objects.count() == 20


# --- access ---------------------------------------------------------------------------------------------------


def actions_on(item) -> list[str]:
    return [
        reverse("star", args=[item.pk]),
        reverse("tag_add", args=[item.pk]),
        reverse("tag_remove", args=[item.pk, "x"]),
    ]


def test_outsiders_cannot_star_or_tag_a_clip(outsider_client, owner, team):
    item = make_render(owner)
    Tag.objects.create(render=item, name="x")
    for url in actions_on(item):
        assert outsider_client.post(url, {"name": "mine now"}, **HTMX).status_code == 404, url
    assert not Star.objects.exists() and list(Tag.objects.values_list("name", flat=True)) == ["x"]


def test_teammates_cannot_star_or_tag_a_private_clip(owner, teammate):
    item = make_render(owner, private=True)
    tom = client_for(teammate)
    for url in actions_on(item):
        assert tom.post(url, {"name": "x"}, **HTMX).status_code == 404, url


def test_anonymous_users_go_to_login(client, owner, team):
    item = make_render(owner)
    response = client.get(GALLERY)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    for url in actions_on(item):
        assert client.post(url, {"name": "x"}).status_code == 302, url
    fragment = client.get(GALLERY, **HTMX)
    assert fragment.status_code == 204 and fragment["HX-Redirect"].startswith(reverse("login"))
    assert not Star.objects.exists() and not Tag.objects.exists()


def test_actions_need_the_csrf_token(owner, team):
    item = make_render(owner)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    for url in actions_on(item):
        assert strict.post(url, {"name": "x"}, **HTMX).status_code == 403, url


# --- query counts ---------------------------------------------------------------------------------------------


def seed(owner, teammate, count: int) -> None:
    """`count` clips split between two authors, each with tags, half starred, some reviewed."""
    for i in range(count):
        item = make_render(
            owner if i % 2 else teammate,
            review_state=ReviewState.APPROVED if i % 3 == 0 else ReviewState.NEEDS_REVIEW,
            reviewed_by=teammate if i % 3 == 0 else None,
            reviewed_at=timezone.now() if i % 3 == 0 else None,
        )
        Tag.objects.create(render=item, name=f"campaign-{i % 4}")
        Tag.objects.create(render=item, name="all")
        if i % 2:
            Star.objects.create(user=owner, render=item)


# Full page, in order (pinned for 1 and 30 clips: the same number):
#   1. the session, 2. the user (authentication middleware)
#   3. the user's memberships with their teams, 4. the team they picked (access.viewer: the active team is one of
#      those teams, the reviewer teams, for the cards' review buttons, are read off the same rows)
#   5. one page of renders (+1 to know if there is a next) with author, team and reviewer joined and
#      `is_starred` as a subquery per row, 6. the tags of those renders (prefetch)
#   7. the team's members, for the filter bar's author choices
#   then the context processors, lazily, in the order base.html reads them: the "To review" link and the team
#   switcher read the request's Viewer again (no query; not a reviewer, so no count query), 8. open gateway
#   alerts (the banner, below the header)
FULL_PAGE_QUERIES = 8
# The fragment (a filter change or the next page): 1-6 as above. No filter bar (7), and the fragment reads no
# context-processor value, so the banner costs nothing (8).
FRAGMENT_QUERIES = 6


@pytest.mark.parametrize("count", [1, 30])
def test_gallery_page_query_count_does_not_grow_with_clips(
    owner_client, owner, teammate, count, django_assert_num_queries
):
    seed(owner, teammate, count)
    with django_assert_num_queries(FULL_PAGE_QUERIES):
        response = owner_client.get(GALLERY, {"scope": "team"})
    assert len(ids(response)) == min(count, PAGE_SIZE)


@pytest.mark.parametrize("count", [1, 30])
def test_gallery_fragment_query_count_does_not_grow_with_clips(
    owner_client, owner, teammate, count, django_assert_num_queries
):
    seed(owner, teammate, count)
    with django_assert_num_queries(FRAGMENT_QUERIES):
        response = owner_client.get(GALLERY, {"scope": "team", "tag": "all", "q": "apple"}, **HTMX)
    assert len(ids(response)) == min(count, PAGE_SIZE)


# --- in the browser ---------------------------------------------------------------------------------------------


@pytest.fixture
def clips_on_disk(owner, teammate, settings, tmp_path) -> list[Render]:
    """30 finished team clips, 25 of them with a real 3 s MP4 and a poster on disk."""
    import shutil

    from PIL import Image

    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    clip = make_clip(tmp_path / "clip.mp4", size="320x180", seconds=3)
    renders = []
    for i in range(30):
        item = make_render(owner if i % 2 else teammate, prompt=f"Clip {i}: a paper boat", video_width=320)
        if i % 6:
            folder = media / "renders" / str(item.pk)
            folder.mkdir(parents=True)
            shutil.copy(clip, folder / "clip.mp4")
            Image.new("RGB", (320, 180), "teal").save(folder / "poster.jpg")
            item.video, item.poster = f"renders/{item.pk}/clip.mp4", f"renders/{item.pk}/poster.jpg"
            item.video_height = 180
            item.save()
        renders.append(item)
    return renders


@pytest.mark.browser
def test_in_the_browser_hover_previews_scroll_loads_more_and_filters_follow_the_url(
    page, live_server, owner, clips_on_disk
):
    from playwright.sync_api import expect

    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", "pw-" + owner.username)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}{GALLERY}")
    cards = page.locator(".clip")
    expect(cards).to_have_count(PAGE_SIZE)

    thumb = page.locator(".clip .thumb[data-preview]").first
    thumb.hover()  # a muted preview plays over the poster...
    page.wait_for_function(
        "() => { const v = document.querySelector('.thumb video'); return v && v.currentTime > 0.2 }"
    )
    assert thumb.locator("video").evaluate("v => v.muted && !v.paused")
    page.mouse.move(1, 1)  # ...and stops when the pointer leaves
    page.wait_for_function("() => document.querySelector('.thumb video').paused")

    cards.last.scroll_into_view_if_needed()  # the sentinel is revealed: the next page replaces it
    expect(cards).to_have_count(30)
    shown = page.eval_on_selector_all(".clip", "cards => cards.map(c => c.id)")
    assert len(set(shown)) == 30

    first = cards.first
    first.locator("button.star").click()
    expect(first.locator("button.star")).to_have_attribute("aria-pressed", "true")
    first.locator(".tag-add input[name=name]").fill("<b>x</b>")
    first.locator(".tag-add input[name=name]").press("Enter")
    expect(first.locator(".tag a")).to_have_text("#<b>x</b>")  # text, not markup
    assert first.locator(".tags b").count() == 0

    page.fill("#gallery-q", "Clip 1")  # Clip 1 and Clip 10-19
    expect(cards).to_have_count(11)
    page.wait_for_function("() => location.search.includes('q=Clip')")
    page.select_option("#gallery-sort", "cost")
    page.wait_for_function("() => location.search.includes('sort=cost')")
    page.go_back()  # the filter bar and the grid agree on what the URL says
    page.wait_for_function("() => location.search.includes('sort=newest')")
    expect(page.locator("#gallery-sort")).to_have_value("newest")
    expect(page.locator("#gallery-q")).to_have_value("Clip 1")
    expect(cards).to_have_count(11)
    assert errors == []


def test_tags_are_case_insensitive_and_keep_the_teams_first_spelling(owner, teammate, team):

    first, second = make_render(owner, prompt="One"), make_render(teammate, prompt="Two")
    do_add_tag(owner, first, "Spring Campaign")
    do_add_tag(owner, first, "spring campaign")  # the same tag: kept once
    tag = do_add_tag(teammate, second, "SPRING campaign")
    assert tag.name == "Spring Campaign"
    assert list(first.tags.values_list("name", flat=True)) == ["Spring Campaign"]
    client = Client()
    client.force_login(owner)
    found = ids(client.get(GALLERY, {"scope": "team", "tag": "spring CAMPAIGN"}))
    assert set(found) == {str(first.pk), str(second.pk)}
