"""Share links outside the team: made by the clip's author or a team admin, a public page with the player and the
prompt (nothing else), no login, a view count, an expiry (7 days unless chosen), revocation, and a video that is
served only while the link is live.

People: Olivia (owner, member of Acme), Tom (teammate), Rita (reviewer), Ada (admin), Oscar (outsider).
Decisions pinned here: a forged or unknown link is 404; an expired or revoked one is 410 with a page that says so,
and its video URL is 410 too; a view is a GET of the page (not the video's range requests, not a HEAD); making a
clip private does not revoke its links (its author revokes them).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import HTMX
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from studio import access
from studio.models import Render, ShareLink, State
from tests.fixtures import browser_log_in, client_for, make_render

PROMPT = "SHARED a paper lantern rises over a frozen lake"


@pytest.fixture
def clip(owner, team, settings, tmp_path) -> Render:
    """Olivia's finished clip in Acme with a (fake) file: the server does not parse it."""
    render = make_render(
        owner,
        team=team,
        prompt=PROMPT,
        billed_cost=Decimal("0.4321"),
        video_duration=5.0,
        finished_at=timezone.now(),
    )
    folder = tmp_path / "media" / "renders" / str(render.pk)
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(1000))
    Render.objects.filter(pk=render.pk).update(video=f"renders/{render.pk}/clip.mp4")
    render.refresh_from_db()
    return render


def create(user, render: Render, **data):
    return client_for(user).post(reverse("share_create", args=[render.pk]), data, **HTMX)


def the_link(render: Render) -> ShareLink:
    return ShareLink.objects.get(render=render)


def page_url(link: ShareLink) -> str:
    return reverse("share", args=[access.share_token(link)])


def video_url(link: ShareLink) -> str:
    return reverse("share_video", args=[access.share_token(link)])


# --- making and revoking ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "status"),
    [("owner", 200), ("admin", 200), ("teammate", 403), ("reviewer", 403), ("outsider", 404)],
)
def test_the_author_or_a_team_admin_makes_a_share_link(request, clip, person, status):
    response = create(request.getfixturevalue(person), clip)
    assert response.status_code == status
    assert ShareLink.objects.filter(render=clip).count() == (1 if status == 200 else 0)


def test_a_link_works_for_seven_days_unless_chosen_and_is_listed_with_its_url(owner, clip):
    before = timezone.now()
    html = create(owner, clip).content.decode()
    link = the_link(clip)
    assert before + timedelta(days=7) <= link.expires_at <= timezone.now() + timedelta(days=7)
    assert link.created_by == owner and link.views == 0
    assert "http://testserver" + page_url(link) in html and "0 views" in html and "Revoke" in html
    create(owner, clip, days="30")
    newest = ShareLink.objects.filter(render=clip).first()
    assert newest.expires_at - newest.created_at == timedelta(days=30)


@pytest.mark.parametrize("days", ["0", "8", "-1", "seven", "1e3", ""])
def test_a_lifetime_not_offered_is_a_400_that_says_which_are(owner, clip, days):
    response = create(owner, clip, days=days)
    assert response.status_code == 400
    assert "1 day, 7 days, 30 days" in response.content.decode()
    assert not ShareLink.objects.exists()


def test_an_unfinished_render_is_not_shared(owner, team):
    running = make_render(owner, State.RUNNING, team=team)
    response = create(owner, running)
    assert response.status_code == 400 and "finished" in response.content.decode()


def test_the_detail_page_lists_every_link_to_its_author_and_admins_only(owner, admin, teammate, clip):
    create(owner, clip)
    create(admin, clip, days="1")
    url = reverse("detail", args=[clip.pk])
    for person in (owner, admin):
        html = client_for(person).get(url).content.decode()
        assert html.count('data-testid="share-link"') == 2 and "Create share link" in html
    html = client_for(teammate).get(url).content.decode()
    assert "share-links" not in html and "/s/" not in html


@pytest.mark.parametrize(("person", "status"), [("teammate", 403), ("outsider", 404), ("admin", 200)])
def test_only_the_author_or_an_admin_revokes(request, owner, clip, person, status):
    create(owner, clip)
    link = the_link(clip)
    user = request.getfixturevalue(person)
    response = client_for(user).post(reverse("share_revoke", args=[clip.pk, link.pk]), **HTMX)
    assert response.status_code == status
    link.refresh_from_db()
    assert (link.revoked_at is not None) == (status == 200)


def test_revoking_twice_keeps_the_first_revocation(owner, admin, clip):
    create(owner, clip)
    link = the_link(clip)
    url = reverse("share_revoke", args=[clip.pk, link.pk])
    client_for(owner).post(url, **HTMX)
    first = ShareLink.objects.get(pk=link.pk)
    html = client_for(admin).post(url, **HTMX).content.decode()
    again = ShareLink.objects.get(pk=link.pk)
    assert (again.revoked_at, again.revoked_by) == (first.revoked_at, owner)
    assert "revoked" in html


def test_a_link_is_revoked_only_through_its_own_clip(owner, team, clip):
    other = make_render(owner, team=team)
    create(owner, clip)
    link = the_link(clip)
    response = client_for(owner).post(reverse("share_revoke", args=[other.pk, link.pk]), **HTMX)
    assert response.status_code == 404
    assert ShareLink.objects.get(pk=link.pk).revoked_at is None


def test_an_operator_finds_live_links_in_the_admin_and_revokes_them(owner, clip, client, make_user):
    create(owner, clip)
    create(owner, clip, days="1")
    links = list(ShareLink.objects.filter(render=clip))
    client_for(owner).post(reverse("share_revoke", args=[clip.pk, links[0].pk]), **HTMX)
    operator = make_user("opal", is_staff=True, is_superuser=True)
    admin_site = client_for(operator)
    changelist = reverse("admin:studio_sharelink_changelist")
    listed = admin_site.get(changelist, {"q": clip.prompt[:12]}).content.decode()
    assert listed.count('name="_selected_action"') == 2 and access.share_token(links[0]) not in listed
    action = {"action": "revoke", "_selected_action": [str(link.pk) for link in links]}
    done = admin_site.post(changelist, action, follow=True).content.decode()
    assert "1 link(s) revoked; the others were already revoked." in done
    assert client.get(page_url(links[1])).status_code == 410  # the public page stops at once
    assert ShareLink.objects.get(pk=links[1].pk).revoked_by == operator
    assert ShareLink.objects.get(pk=links[0].pk).revoked_by == owner  # the first revocation keeps its who
    assert admin_site.get(reverse("admin:studio_sharelink_add")).status_code == 403
    assert "delete_selected" not in listed  # revoked, never deleted: the row is the record


# --- the public page -------------------------------------------------------------------------------------------


def test_anyone_with_the_link_sees_the_player_and_the_prompt_and_nothing_else(client, owner, team, clip):
    create(owner, clip)
    link = the_link(clip)
    response = client.get(page_url(link))  # no login
    html = response.content.decode()
    assert response.status_code == 200
    assert PROMPT in html and video_url(link) in html
    for private in (owner.username, team.name, "0.43", str(clip.pk), "/renders/", "Log out"):
        assert private not in html, private


def test_each_view_of_the_page_is_counted_but_not_the_video_or_a_head(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    client.get(page_url(link))
    client.get(page_url(link))
    client.head(page_url(link))
    client.get(video_url(link), HTTP_RANGE="bytes=0-99")
    assert ShareLink.objects.get(pk=link.pk).views == 2
    assert "2 views" in client_for(owner).get(reverse("detail", args=[clip.pk])).content.decode()


def test_the_video_is_served_with_ranges_while_the_link_is_live(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    whole = client.get(video_url(link))
    part = client.get(video_url(link), HTTP_RANGE="bytes=0-99")
    assert whole.status_code == 200 and whole["Content-Type"] == "video/mp4"
    assert b"".join(whole.streaming_content).startswith(b"\x00\x00\x00\x18ftypmp42")
    assert part.status_code == 206 and len(b"".join(part.streaming_content)) == 100


def gone(client, link: ShareLink, says: str) -> None:
    page = client.get(page_url(link))
    assert page.status_code == 410
    assert "This link no longer works" in page.content.decode() and says in page.content.decode()
    assert PROMPT not in page.content.decode()
    assert client.get(video_url(link)).status_code == 410


def test_an_expired_link_is_410_page_and_video(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    gone(client, link, "It expired")
    assert ShareLink.objects.get(pk=link.pk).views == 0


def test_a_revoked_link_is_410_page_and_video_at_once(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    assert client.get(page_url(link)).status_code == 200
    client_for(owner).post(reverse("share_revoke", args=[clip.pk, link.pk]), **HTMX)
    gone(client, link, "It was revoked")


def test_a_link_whose_clip_is_gone_is_410(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    Render.objects.filter(pk=clip.pk).update(file_lost_at=timezone.now())
    gone(client, link, "no longer available")


def test_making_the_clip_private_leaves_its_links_to_its_author(client, owner, clip):
    create(owner, clip)
    Render.objects.filter(pk=clip.pk).update(private=True)
    assert client.get(page_url(the_link(clip))).status_code == 200


def tampered(token: str) -> list[str]:
    value, signature = token.split(":")
    other = "0" * 32
    return [
        value + ":" + signature[:-1] + ("A" if signature[-1] != "A" else "B"),  # a changed signature
        other + ":" + signature,  # another id under this signature
        other,  # no signature
        signing.Signer(salt="studio.init-image").sign(value),  # signed for something else
        signing.Signer(salt=access.SHARE_SALT).sign("not-a-uuid"),  # signed, but not a link id
        signing.Signer(salt=access.SHARE_SALT).sign(other),  # a well-signed id of no link
    ]


def test_a_forged_or_unknown_link_is_404_page_and_video(client, owner, clip):
    create(owner, clip)
    token = access.share_token(the_link(clip))
    for forged in tampered(token):
        assert client.get(reverse("share", args=[forged])).status_code == 404, forged
        assert client.get(reverse("share_video", args=[forged])).status_code == 404, forged
    assert ShareLink.objects.get().views == 0


def test_the_share_pages_refuse_post(client, owner, clip):
    create(owner, clip)
    link = the_link(clip)
    assert client.post(page_url(link)).status_code == 405
    assert client.post(video_url(link)).status_code == 405


# --- in the browser --------------------------------------------------------------------------------------------


SLOW = 20_000  # ms: what an expectation waits on a busy machine (it passes as soon as it holds)


@pytest.fixture
def real_clip(clip, tmp_path) -> Render:
    from tests.conftest import make_clip

    make_clip(tmp_path / "media" / clip.video.name, size="160x90", seconds=3, rate=24)
    return clip


@pytest.mark.browser
def test_a_share_link_plays_for_an_anonymous_browser_counts_its_views_and_dies_when_revoked(
    page, browser, live_server, owner, real_clip
):
    from conftest import wait_for
    from playwright.sync_api import expect

    browser_log_in(page, live_server, owner)
    page.goto(live_server.url + reverse("detail", args=[real_clip.pk]))
    page.click("[data-testid=share-create]")
    url = page.locator("[data-testid=share-url]").inner_text(timeout=SLOW)
    assert re.fullmatch(re.escape(live_server.url) + r"/s/[0-9a-f]{32}:[\w-]+/", url)

    stranger = browser.new_context()  # no cookies: nobody logged in
    anonymous = stranger.new_page()
    anonymous.goto(url)
    expect(anonymous.locator("[data-testid=share-prompt]")).to_have_text(PROMPT, timeout=SLOW)
    video = anonymous.locator("[data-testid=share-video]")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for(lambda: video.evaluate("v => v.currentTime") > 0.2, timeout=15)
    anonymous.reload()
    wait_for(lambda: the_link(real_clip).views == 2, timeout=10)

    page.reload()
    expect(page.locator("[data-testid=share-views]")).to_have_text("2 views", timeout=SLOW)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=share-revoke]")
    expect(page.locator("[data-testid=share-state]")).to_contain_text("revoked", timeout=SLOW)

    response = anonymous.goto(url)
    assert response.status == 410
    expect(anonymous.locator("[data-testid=share-gone]")).to_contain_text("It was revoked", timeout=SLOW)
    video_status = anonymous.evaluate("u => fetch(u).then(r => r.status)", url + "video.mp4")
    assert video_status == 410
    stranger.close()
