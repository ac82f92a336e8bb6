"""A clip's detail page, its review and comments, the "to review" queue: access, fragments, escaping, queries.

People: Olivia (owner, a member of Acme), Tom (teammate, member), Rita (reviewer), Ada (admin), Oscar (outsider).
Decisions pinned here: reviewers and admins review their teammates' renders, never their own (a second pair of
eyes is the point; the queue lists only others' too); private renders are never reviewed; only finished clips are
reviewed; comments pinned to a moment come in the order of the clip, then the comments about the whole clip, each
oldest first.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import HTMX
from django.urls import reverse
from django.utils import timezone

from studio.models import Comment, Membership, Render, Review, ReviewState, State, Team
from tests.conftest import make_clip
from tests.fixtures import browser_log_in, client_for, join, make_render

PROMPT = "A red apple rolls slowly across a wooden table"
EVIL = '<script>alert(1)</script> <b hx-get="/logout/" hx-trigger="load">x</b>'

# --- people and renders ----------------------------------------------------------------------------------------


@pytest.fixture
def team_name() -> str:
    """Shown on the detail page: `test_detail_page_escapes_the_prompt_the_team_name_and_comments` checks it."""
    return "Acme <i>"


@pytest.fixture
def people(owner, teammate, reviewer, admin, outsider) -> dict:
    return {"owner": owner, "teammate": teammate, "reviewer": reviewer, "admin": admin, "outsider": outsider}


@pytest.fixture
def clip(owner, team, settings, tmp_path) -> Render:
    """Olivia's finished 5 s Sora 2 draft in Acme, with a (fake) clip and poster on disk."""
    render = make_render(
        owner,
        team=team,
        billed_cost=Decimal("0.4800"),
        video_duration=5.0,
        video_width=160,
        video_height=90,
        submitted_at=timezone.now(),
        finished_at=timezone.now() + timedelta(seconds=42),
    )
    folder = tmp_path / "media" / "renders" / str(render.pk)
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    (folder / "poster.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    render.video = f"renders/{render.pk}/clip.mp4"
    render.poster = f"renders/{render.pk}/poster.jpg"
    render.save()
    return render


def url(name: str, render: Render) -> str:
    return reverse(name, args=[render.pk])


def review(user, render: Render, state: str = ReviewState.APPROVED, **extra):
    return client_for(user).post(url("review", render), {"state": state, **extra}, **HTMX)


def comment(user, render: Render, text: str = "Nice light", **extra):
    return client_for(user).post(url("comment_add", render), {"text": text, **extra}, **HTMX)


def element(html: str, element_id: str) -> str:
    """The opening tag of the element with this id."""
    return re.search(rf'<[a-z0-9]+ id="{re.escape(element_id)}"[^>]*>', html).group(0)


# --- the detail page -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "status"),
    [("owner", 200), ("teammate", 200), ("reviewer", 200), ("admin", 200), ("outsider", 404)],
)
def test_detail_page_is_for_the_author_and_the_team(people, clip, person, status):
    assert client_for(people[person]).get(url("detail", clip)).status_code == status


def test_detail_page_sends_anonymous_users_to_login(client, clip):
    response = client.get(url("detail", clip))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_detail_page_shows_the_clip_its_parameters_cost_timings_and_actions(owner, clip):
    html = client_for(owner).get(url("detail", clip)).content.decode()
    player = element(html, "player")
    assert f'src="{url("video", clip)}"' in player
    assert f'poster="{url("poster", clip)}"' in player
    assert PROMPT in html and "Copy prompt" in html and 'data-copy="#prompt-text"' in html
    assert "Sora 2 (draft)" in html and "1280×720" in html and "5 s" in html
    assert "not supported by this model" in html  # Sora 2 has no seed
    assert "Init image</dt><dd>no" in html
    assert re.search(r'data-testid="estimated">\$0\.50', html)
    assert re.search(r'data-testid="billed">\$0\.48', html)
    assert 'data-testid="difference">−$0.02' in html
    assert "42 s" in html  # elapsed
    assert f'href="{url("video", clip)}?download=1"' in html
    assert f'action="{url("rerun", clip)}"' in html and 'name="client_token"' in html
    assert "Re-run exactly · $0.50" in html
    assert f'href="/?remix={clip.pk}"' in html
    assert f'href="/?promote={clip.pk}"' in html
    assert f'action="{url("private", clip)}"' in html


def test_detail_page_of_a_pro_render_shows_its_pro_parameters_and_no_promote(owner, team):
    pro = make_render(
        owner,
        team=team,
        model="sora-2-pro",
        params={
            "duration_seconds": 8,
            "resolution": "720p",
            "aspect_ratio": "9:16",
            "seed": 7,
            "style_preset": "anime",
        },
        estimated_cost=Decimal("1.1100"),
        rate_per_second=Decimal("0.138750"),
        state=State.RUNNING,
        progress=40,
    )
    html = client_for(owner).get(url("detail", pro)).content.decode()
    assert "720p" in html and "9:16" in html and "720×1280" in html and "anime" in html
    assert "Seed</dt><dd>7" in html
    assert "?promote=" not in html
    assert 'id="player"' not in html and "No clip to play" in html
    assert "Re-run exactly · $1.11" in html


def test_only_the_author_sees_the_privacy_switch_anyone_may_rerun_or_remix(teammate, clip):
    html = client_for(teammate).get(url("detail", clip)).content.decode()
    assert url("private", clip) not in html
    assert "Re-run exactly · $0.50" in html  # as Tom's own new render
    assert f'href="/?remix={clip.pk}"' in html


def test_detail_page_escapes_the_prompt_the_team_name_and_comments(owner, team):
    render = make_render(owner, team=team, prompt=EVIL)
    Comment.objects.create(render=render, author=owner, text=EVIL)
    html = client_for(owner).get(url("detail", render)).content.decode()
    assert "<script>alert(1)" not in html and 'hx-get="/logout/"' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &lt;i&gt;" in html and "Acme <i>" not in html


def test_detail_page_shows_lineage_both_ways(owner, teammate, team, clip):
    pro = make_render(owner, team=team, model="sora-2-pro", params={"duration_seconds": 5}, parent=clip)
    hidden = make_render(
        teammate, team=team, model="sora-2-pro", params={"duration_seconds": 5}, parent=clip, private=True
    )
    draft_html = client_for(owner).get(url("detail", clip)).content.decode()
    assert url("detail", pro) in draft_html
    assert url("detail", hidden) not in draft_html  # Tom's private promotion is his alone
    assert f"/renders/{clip.pk}/lineage/" in draft_html
    pro_html = client_for(owner).get(url("detail", pro)).content.decode()
    assert "Promoted from" in pro_html and url("detail", clip) in pro_html
    assert f"/renders/{pro.pk}/lineage/" in pro_html


# --- review ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "status"),
    [("reviewer", 200), ("admin", 200), ("teammate", 403), ("owner", 403), ("outsider", 404)],
)
def test_only_the_teams_reviewers_and_admins_review(people, clip, person, status):
    assert review(people[person], clip).status_code == status
    clip.refresh_from_db()
    assert (clip.review_state == ReviewState.APPROVED) == (status == 200)
    assert Review.objects.filter(render=clip).count() == (1 if status == 200 else 0)


def test_review_sends_anonymous_users_to_login(client, clip):
    response = client.post(url("review", clip), {"state": "approved"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    htmx = client.post(url("review", clip), {"state": "approved"}, **HTMX)
    assert htmx.status_code == 204 and htmx["HX-Redirect"].startswith(reverse("login"))


def test_a_reviewer_may_not_review_their_own_render(reviewer, team):
    own = make_render(reviewer, team=team)
    assert review(reviewer, own).status_code == 403
    own.refresh_from_db()
    assert own.review_state == ReviewState.NEEDS_REVIEW and not Review.objects.exists()


def test_a_private_render_is_never_reviewed(reviewer, owner, team):
    secret = make_render(owner, team=team, private=True)
    assert review(reviewer, secret).status_code == 404  # Rita cannot tell it exists
    own_secret = make_render(reviewer, team=team, private=True)
    assert review(reviewer, own_secret).status_code == 403  # her own, but private renders are not reviewed
    assert not Review.objects.exists()


def test_a_review_records_who_and_when_and_keeps_the_history_newest_first(reviewer, admin, clip):
    review(reviewer, clip, ReviewState.CHANGES_REQUESTED, note="Too dark")
    review(admin, clip, ReviewState.APPROVED, note="Fixed in grading")
    clip.refresh_from_db()
    assert (clip.review_state, clip.reviewed_by) == (ReviewState.APPROVED, admin)
    assert clip.reviewed_at is not None
    history = list(
        clip.reviews.order_by("-created_at", "-pk").values_list("reviewer__username", "state", "note")
    )
    assert history == [("ada", "approved", "Fixed in grading"), ("rita", "changes_requested", "Too dark")]
    html = client_for(reviewer).get(url("detail", clip)).content.decode()
    listed = html[html.index('id="review-history"') :]
    assert listed.index("Fixed in grading") < listed.index("Too dark")


def test_review_from_the_detail_page_answers_with_the_actions_and_the_history_out_of_band(reviewer, clip):
    response = review(reviewer, clip, ReviewState.REJECTED, note="Wrong <b>apple</b>", **{"from": "detail"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<div id="review-{clip.pk}"')
    actions = element(html, f"review-{clip.pk}")
    assert 'hx-target="this"' in actions and 'hx-swap="outerHTML"' in actions and "hx-swap-oob" not in actions
    assert 'data-testid="review-state">Rejected<' in html and "by rita" in html
    assert 'name="from" value="detail"' in html  # the next click updates the history too
    assert 'hx-swap-oob="true"' in element(html, "review-history")
    assert "Wrong &lt;b&gt;apple&lt;/b&gt;" in html and "<b>apple" not in html
    assert "Marked “Rejected”" in html  # the toast


def test_review_from_a_gallery_card_answers_with_the_actions_only(reviewer, clip):
    html = review(reviewer, clip).content.decode()
    assert f'id="review-{clip.pk}"' in html
    assert "review-history" not in html


def test_review_without_htmx_goes_back_to_the_detail_page(reviewer, clip):
    response = client_for(reviewer).post(url("review", clip), {"state": "approved"})
    assert response.status_code == 302 and response["Location"] == url("detail", clip)


@pytest.mark.parametrize(
    "data",
    [
        {"state": "lovely"},
        {"state": ""},
        {},
        {"state": "approved", "note": "x" * 2001},
        {"state": "approved", "note": "a\x07b"},
    ],
)
def test_a_bad_review_is_a_400_with_a_message_for_the_toast(reviewer, clip, data):
    response = client_for(reviewer).post(url("review", clip), data, **HTMX)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert re.search(r"review state|2000|control characters", response.content.decode())
    assert not Review.objects.exists()


def test_every_review_state_may_be_chosen_including_back_to_needs_review(reviewer, clip):
    for state in [
        ReviewState.APPROVED,
        ReviewState.NEEDS_REVIEW,
        ReviewState.REJECTED,
        ReviewState.CHANGES_REQUESTED,
    ]:
        assert review(reviewer, clip, state).status_code == 200
        clip.refresh_from_db()
        assert clip.review_state == state


def test_an_unfinished_render_is_not_reviewed(reviewer, owner, team):
    running = make_render(owner, team=team, state=State.RUNNING)
    response = review(reviewer, running)
    assert response.status_code == 403  # the review rule itself: only finished clips (access.reviewable)
    html = client_for(reviewer).get(url("detail", running)).content.decode()
    assert url("review", running) not in html  # no buttons to press


def test_review_buttons_show_only_to_those_who_may_review(people, clip):
    for person, shown in [("reviewer", True), ("admin", True), ("teammate", False), ("owner", False)]:
        html = client_for(people[person]).get(url("detail", clip)).content.decode()
        assert (f'hx-post="{url("review", clip)}"' in html) == shown, person
        assert f'id="review-{clip.pk}"' in html  # everyone sees the review state


def test_the_review_partial_works_on_its_own(reviewer, teammate, clip, rf):
    from django.template.loader import render_to_string

    for user, shown in [(reviewer, True), (teammate, False)]:
        request = rf.get("/")
        request.user = user
        html = render_to_string("partials/review_actions.html", {"render": clip}, request=request)
        assert f'id="review-{clip.pk}"' in html
        assert ('value="approved"' in html) == shown


# --- comments --------------------------------------------------------------------------------------------------


def test_anyone_who_sees_the_clip_may_comment_and_gets_the_comments_list_back(teammate, clip):
    response = comment(teammate, clip, "  Nice light  ")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<ol id="comments"')
    assert "Nice light" in html and "tom" in html
    assert Comment.objects.get().text == "Nice light"
    assert Comment.objects.get().at_seconds is None
    assert "data-at=" not in html


def test_a_comment_pinned_to_a_moment_seeks_the_player_there(teammate, clip):
    html = comment(teammate, clip, "The apple stops here", at="3.25").content.decode()
    assert Comment.objects.get().at_seconds == 3.25
    assert 'data-at="3.2"' in html and ">0:03.2<" in html


def test_a_comment_may_be_pinned_to_the_very_start_and_the_very_end(teammate, clip):
    assert comment(teammate, clip, "start", at="0").status_code == 200
    assert comment(teammate, clip, "end", at="5.0").status_code == 200
    assert sorted(Comment.objects.values_list("at_seconds", flat=True)) == [0.0, 5.0]


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("-0.1", "before the start"),
        ("5.1", "past the end of the clip (5 s)"),
        ("abc", "must be a number"),
        ("nan", "must be a number"),
        ("inf", "must be a number"),
        ("1e309", "must be a number"),
    ],
)
def test_a_bad_moment_is_a_400_with_a_message_never_a_500(teammate, clip, at, message):
    response = comment(teammate, clip, at=at)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain") and message in response.content.decode()
    assert not Comment.objects.exists()


@pytest.mark.parametrize("text", ["", "   \n  ", "x" * 2001, "bell\x07", "tab\there", "nul\x00"])
def test_a_bad_comment_is_a_400_with_a_message(teammate, clip, text):
    response = comment(teammate, clip, text)
    assert response.status_code == 400 and response.content
    assert not Comment.objects.exists()


def test_a_comment_keeps_its_line_breaks_and_may_be_2000_characters_long(teammate, clip):
    assert comment(teammate, clip, "one\r\ntwo").status_code == 200
    assert comment(teammate, clip, "y" * 1999 + "\r\n").status_code == 200  # counted after trimming
    assert (
        comment(teammate, clip, "z" * 1000 + "\r\n" * 10 + "z" * 990).status_code == 200
    )  # CRLF counts as one
    assert Comment.objects.filter(text="one\ntwo").exists()


def test_comment_text_is_escaped_in_the_fragment_and_on_the_page(teammate, owner, clip):
    html = comment(teammate, clip, EVIL).content.decode()
    page = client_for(owner).get(url("detail", clip)).content.decode()
    for shown in (html, page):
        assert "<script>" not in shown and 'hx-get="/logout/"' not in shown
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
        assert "hx-get=&quot;/logout/&quot;" in shown


def test_comments_come_in_the_order_of_the_clip_then_the_general_ones(owner, clip):
    now = timezone.now()
    for text, at, minutes in [
        ("general old", None, 0),
        ("at 4", 4.0, 1),
        ("general new", None, 2),
        ("at 1", 1.0, 3),
    ]:
        Comment.objects.create(
            render=clip, author=owner, text=text, at_seconds=at, created_at=now + timedelta(minutes=minutes)
        )
    html = client_for(owner).get(url("detail", clip)).content.decode()
    listed = html[html.index('id="comments"') :]
    positions = [listed.index(text) for text in ["at 1", "at 4", "general old", "general new"]]
    assert positions == sorted(positions)


def test_comment_without_htmx_goes_back_to_the_comments(teammate, clip):
    response = client_for(teammate).post(url("comment_add", clip), {"text": "hi"})
    assert response.status_code == 302 and response["Location"] == url("detail", clip) + "#comments"


@pytest.mark.parametrize(("person", "status"), [("outsider", 404), ("admin", 200)])
def test_comments_follow_who_sees_the_clip(people, clip, person, status):
    assert comment(people[person], clip).status_code == status


# --- privacy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "status"), [("owner", 200), ("teammate", 403), ("admin", 403), ("outsider", 404)]
)
def test_only_the_author_makes_a_render_private(people, clip, person, status):
    response = client_for(people[person]).post(url("private", clip), {"private": "1"}, **HTMX)
    assert response.status_code == status
    clip.refresh_from_db()
    assert clip.private == (status == 200)


def test_a_private_render_disappears_from_the_team_at_once_and_comes_back_when_shared(
    owner, teammate, reviewer, clip
):
    response = client_for(owner).post(url("private", clip), {"private": "1"}, **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="privacy"') and "Private" in html
    assert 'hx-swap-oob="true"' in element(html, f"review-{clip.pk}")
    for person in (teammate, reviewer):
        assert client_for(person).get(url("detail", clip)).status_code == 404
        assert client_for(person).get(url("video", clip)).status_code == 404
    assert review(reviewer, clip).status_code == 404
    client_for(owner).post(url("private", clip), {"private": "0"}, **HTMX)
    assert client_for(teammate).get(url("detail", clip)).status_code == 200


def test_the_privacy_switch_says_which_way_so_a_double_click_does_not_flip_it_back(owner, clip):
    for _ in range(2):
        client_for(owner).post(url("private", clip), {"private": "1"}, **HTMX)
    clip.refresh_from_db()
    assert clip.private
    assert client_for(owner).post(url("private", clip), {"private": "maybe"}, **HTMX).status_code == 400


# --- the "to review" queue -------------------------------------------------------------------------------------


def test_the_queue_lists_finished_unreviewed_shared_renders_of_others_in_the_teams_one_reviews(
    owner, teammate, reviewer, team, make_user, clip
):
    other_team = Team.objects.create(name="Other", slug="other")
    stranger = join(other_team, make_user("sam"))
    waiting = make_render(teammate, team=team)
    excluded = [
        make_render(reviewer, team=team),  # her own
        make_render(owner, team=team, private=True),
        make_render(owner, team=team, state=State.RUNNING),
        make_render(owner, team=team, review_state=ReviewState.APPROVED),
        make_render(owner, team=None),  # personal
        make_render(stranger, team=other_team),
    ]
    response = client_for(reviewer).get(reverse("review_queue"))
    html = response.content.decode()
    assert response.status_code == 200
    assert {r.pk for r in response.context["renders"]} == {clip.pk, waiting.pk}
    assert response.context["to_review_count"] == 2
    assert 'data-testid="queue-count">2<' in html
    assert f'id="review-{clip.pk}"' in html and f'hx-post="{url("review", clip)}"' in html
    assert not any(str(r.pk) in html for r in excluded)


def test_reviewing_from_the_queue_takes_the_render_off_it(reviewer, clip):
    review(reviewer, clip)
    response = client_for(reviewer).get(reverse("review_queue"))
    assert list(response.context["renders"]) == [] and response.context["to_review_count"] == 0


def test_a_user_who_reviews_nowhere_gets_an_empty_queue_with_an_explanation(teammate, clip):
    response = client_for(teammate).get(reverse("review_queue"))
    assert response.status_code == 200
    assert 'data-testid="not-a-reviewer"' in response.content.decode()
    assert list(response.context["renders"]) == []


def test_the_queue_sends_anonymous_users_to_login(client):
    response = client.get(reverse("review_queue"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# --- membership, methods ---------------------------------------------------------------------------------------


def test_a_member_removed_from_the_team_loses_access_at_once_video_included(reviewer, clip):
    browser = client_for(reviewer)
    assert browser.get(url("detail", clip)).status_code == 200
    assert browser.get(url("video", clip)).status_code == 200
    Membership.objects.filter(user=reviewer).delete()
    assert browser.get(url("detail", clip)).status_code == 404
    assert browser.get(url("video", clip)).status_code == 404
    assert browser.get(url("poster", clip)).status_code == 404
    assert browser.post(url("review", clip), {"state": "approved"}, **HTMX).status_code == 404
    assert browser.post(url("comment_add", clip), {"text": "hi"}, **HTMX).status_code == 404
    assert 'data-testid="not-a-reviewer"' in browser.get(reverse("review_queue")).content.decode()


@pytest.mark.parametrize("name", ["review", "comment_add", "private"])
def test_post_only_views_refuse_get(owner, clip, name):
    assert client_for(owner).get(url(name, clip)).status_code == 405


def test_the_detail_page_refuses_post(owner, clip):
    assert client_for(owner).post(url("detail", clip)).status_code == 405
    assert client_for(owner).post(reverse("review_queue")).status_code == 405


# --- pinned query counts ---------------------------------------------------------------------------------------


def fill(clip: Render, people: dict, n: int) -> None:
    """n comments (half pinned), n reviews and n visible Pro promotions on the clip, by several people."""
    authors = list(people.values())[:4]
    for i in range(n):
        who = authors[i % len(authors)]
        Comment.objects.create(render=clip, author=who, text=f"c{i}", at_seconds=i / 2 if i % 2 else None)
        Review.objects.create(render=clip, reviewer=who, state=ReviewState.APPROVED, note=f"r{i}")
        make_render(who, team=clip.team, model="sora-2-pro", params={"duration_seconds": 5}, parent=clip)
    Render.objects.filter(pk=clip.pk).update(reviewed_by=people["admin"], reviewed_at=timezone.now())


# The detail page, for a reviewer, whatever the number of comments, reviews and promotions:
#  1 session, 2 user (auth)
#  3 render (access: for_user, with its author, team and last reviewer; the membership subquery is inlined)
#  4 memberships with teams (access.viewer: can_review; the navigation reads the same rows below)
#  5 reviews with their reviewers, 6 comments with their authors
#  7 the promotions the user may see (the parent is none: the clip is a draft), 8 the rate card (re-run price)
#  9 the render's ledger entries
# 10 membership (access.can_share: the reviewer is not its author; the share links are read only by those who share)
#  then the context processors, lazily, in the order base.html reads them:
# 11 count of renders to review, 12 the team picked (navigation: active_team; none, so the oldest team)
# 13 gateway alerts (the banner, below the header)
DETAIL_QUERIES = 13


@pytest.mark.parametrize("n", [1, 6])
def test_the_detail_page_costs_the_same_queries_whatever_it_shows(people, clip, n, django_assert_num_queries):
    fill(clip, people, n)
    browser = client_for(people["reviewer"])
    with django_assert_num_queries(DETAIL_QUERIES):
        response = browser.get(url("detail", clip))
    html = response.content.decode()
    assert html.count('class="comment"') == n and html.count("by ada") >= 1
    assert len(response.context["promotions"]) == n


# The queue, whatever the number of waiting renders:
#  1 session, 2 user
#  3 memberships with teams (access.viewer: the reviewer teams come from these rows, for the view and the
#  navigation), 4 renders with author, team and last reviewer
#  then the context processors, lazily, in the order base.html reads them:
#  5 count of renders to review, 6 the team picked (navigation: active_team; none, so the oldest team)
#  7 gateway alerts
QUEUE_QUERIES = 7


@pytest.mark.parametrize("n", [1, 6])
def test_the_queue_costs_the_same_queries_whatever_it_lists(people, team, n, django_assert_num_queries):
    for i in range(n):
        waiting = make_render(people["owner"], team=team)
        if i % 2:  # sent back to review: it shows who did
            Render.objects.filter(pk=waiting.pk).update(
                reviewed_by=people["admin"], reviewed_at=timezone.now()
            )
    browser = client_for(people["reviewer"])
    with django_assert_num_queries(QUEUE_QUERIES):
        response = browser.get(reverse("review_queue"))
    assert len(response.context["renders"]) == n


# --- in the browser --------------------------------------------------------------------------------------------


@pytest.fixture
def real_clip(clip, tmp_path) -> Render:
    """The clip with a real 5 s H.264 file, so the player can seek."""
    make_clip(tmp_path / "media" / clip.video.name, size="160x90", seconds=5)
    return clip


@pytest.mark.browser
def test_a_reviewer_pins_a_comment_seeks_to_it_and_approves_without_a_reload(
    page, live_server, reviewer, real_clip, tmp_path
):
    from conftest import wait_for
    from playwright.sync_api import expect

    browser_log_in(page, live_server, reviewer)
    page.goto(live_server.url + url("detail", real_clip))
    page.evaluate("window.sameDocument = true")  # gone if anything below reloads the page

    player = page.locator("#player")
    player.evaluate("v => { v.muted = true; v.pause(); v.currentTime = 2.5; }")
    wait_for(lambda: abs(player.evaluate("v => v.currentTime") - 2.5) < 0.2, timeout=15)
    page.fill("#comment-text", "The apple <stops> here")
    page.check("#comment-pin")
    page.click("#comment-form button[type=submit]")
    pinned = page.locator("#comments [data-at]")
    expect(pinned).to_have_text("0:02.5")
    expect(page.locator("#comments")).to_contain_text("The apple <stops> here")
    expect(page.locator("#comment-text")).to_have_value("")
    assert Comment.objects.get().at_seconds == 2.5

    player.evaluate("v => { v.pause(); v.currentTime = 0; }")
    pinned.click()
    wait_for(lambda: player.evaluate("v => v.currentTime") >= 2.4, timeout=15)

    actions = page.locator(f"#review-{real_clip.pk}")
    actions.locator("input[name=note]").fill("Keep this one")
    actions.locator("button[value=approved]").click()
    expect(page.locator(f"#review-{real_clip.pk} [data-testid=review-state]")).to_have_text("Approved")
    expect(page.locator("#review-history")).to_contain_text("Keep this one")
    # The swapped-in form works again: a second decision updates the history too.
    page.locator(f"#review-{real_clip.pk} button[value=changes_requested]").click()
    expect(page.locator("#review-history li")).to_have_count(2)
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(tmp_path / "reviewed.png"), full_page=True)
    assert list(Review.objects.order_by("created_at").values_list("state", flat=True)) == [
        "approved",
        "changes_requested",
    ]


def test_a_review_updates_the_to_review_badge_in_the_same_answer(reviewer, owner, team):
    waiting = [make_render(owner, team=team) for _ in range(2)]
    response = client_for(reviewer).post(url("review", waiting[0]), {"state": "approved"}, **HTMX)
    html = response.content.decode()
    assert '<span id="to-review-badge" hx-swap-oob="true">' in html
    assert 'aria-label="1 to review">1</span>' in html
