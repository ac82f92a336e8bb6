"""Promote a draft to Pro, remix, re-run exactly, and the lineage page: prefill, validation, access, queries."""

from __future__ import annotations

import io
import re
import uuid
from decimal import Decimal

import pytest
from conftest import HTMX
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from studio.actions.renders import do_submit_render
from studio.catalog import MODELS, SORA2_PRO
from studio.forms import RenderForm, nearest_aspect_ratio, nearest_duration, promotion_initial
from studio.models import Budget, Render, State
from tests.fixtures import client_for

PROMPT = "A paper boat drifts down a rain gutter, <b>neon</b> reflections"
PRO = "sora-2-pro"


@pytest.fixture
def teammate_client(teammate):
    return client_for(teammate)


def png() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 36), 40).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def finish(item: Render, billed: Decimal | None = None) -> Render:
    """Mark a render completed with a clip and a bill, as the lifecycle would (files are not needed here)."""
    Render.objects.filter(pk=item.pk).update(
        state=State.COMPLETED,
        progress=100,
        billed_cost=item.estimated_cost if billed is None else billed,
        video=f"renders/{item.pk}/clip.mp4",
        poster=f"renders/{item.pk}/poster.jpg",
        video_width=item.frame_size[0],
        video_height=item.frame_size[1],
        finished_at=timezone.now(),
    )
    item.refresh_from_db()
    return item


def submit(user, *, image: bytes | None = None, **fields) -> Render:
    data = {"model": "sora2", "prompt": PROMPT, "duration_seconds": "10", "size": "1280x720", **fields}
    files = {"init_image": SimpleUploadedFile("shot.png", image, content_type="image/png")} if image else {}
    form = RenderForm(data, files, user=user)
    assert form.is_valid(), form.errors
    return do_submit_render(user, form.order())


@pytest.fixture
def draft(owner, team) -> Render:
    """Olivia's finished 10 s, 1280x720 Sora 2 draft with an init image; it cost $1.00."""
    return finish(submit(owner, image=png()))


def promote_data(draft: Render, **fields) -> dict:
    """What the pre-filled Pro form posts."""
    return {
        "model": PRO,
        "prompt": draft.prompt,
        "duration_seconds": "10",
        "resolution": "1080p",
        "aspect_ratio": "16:9",
        "style_preset": "none",
        "parent": str(draft.pk),
        "client_token": str(uuid.uuid4()),
        **fields,
    }


def promote(user, draft: Render, billed: Decimal | None = None, **fields) -> Render:
    """A Pro render promoted from `draft` through the form, finished."""
    form = RenderForm(promote_data(draft, **fields), user=user)
    assert form.is_valid(), form.errors
    return finish(do_submit_render(user, form.order()), billed)


def hidden_parent(html: str) -> str | None:
    match = re.search(r'<input type="hidden" name="parent"[^>]*?(?: value="([^"]*)")?[^>]*>', html)
    assert match, "the form has no parent field"
    return match.group(1)


# --- promote: the pre-filled form -------------------------------------------------------------------------------


def test_promote_prefills_the_pro_form_from_the_draft(owner_client, draft):
    response = owner_client.get("/", {"promote": draft.pk})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["model"] == PRO
    assert form.initial["prompt"] == draft.prompt
    assert form.initial["aspect_ratio"] == "16:9"  # from 1280x720
    assert form.initial["resolution"] == "1080p"
    assert form.initial["duration_seconds"] == 10  # kept: Pro allows 1-20 s
    assert "seed" not in form.initial  # Sora 2 drafts have no seed
    assert form.initial["parent"] == draft.pk
    html = response.content.decode()
    assert '<option value="sora-2-pro" selected>' in html
    assert '<option value="16:9" selected>' in html and '<option value="1080p" selected>' in html
    assert 'id="id_duration_pro" min="1" max="20" step="1"\n                 value="10"' in html
    assert hidden_parent(html) == str(draft.pk)
    assert "Using the draft's init image" in html
    assert "&lt;b&gt;neon&lt;/b&gt;" in html and "<b>neon</b>" not in html  # the prompt is escaped


def test_promotion_notice_shows_the_pro_cost_beside_the_drafts_and_warns_it_is_not_an_upscale(
    owner_client, draft
):
    html = owner_client.get("/", {"promote": draft.pk}).content.decode()
    assert re.search(r'data-testid="draft-cost">\$1\.00<', html)  # 10 s x $0.10, as billed
    assert re.search(r'data-testid="pro-cost"[^>]*>\$2\.31<', html)  # 10 s x $0.23125 at 1080p
    assert re.search(r'data-testid="estimate-total">\$2\.31<', html)
    assert "do not share\n          seeds" in html and "Re-imagined, not upscaled." in html
    assert "The draft has no seed to carry over." in html


def test_the_live_estimate_reprices_the_pro_cost_in_the_notice(owner_client, draft):
    response = owner_client.post("/estimate/", promote_data(draft, duration_seconds="20"), **HTMX)
    html = response.content.decode()
    assert re.search(r'<strong id="promotion-cost" data-testid="pro-cost" hx-swap-oob="true">\$4\.63<', html)
    assert 'id="err-parent" role="alert" hx-swap-oob="true"></div>' in html  # the parent is fine


@pytest.mark.parametrize(
    ("size", "aspect"), [("1280x720", "16:9"), ("1920x1080", "16:9")], ids=["1280x720", "1920x1080"]
)
def test_promotion_takes_the_aspect_ratio_from_the_drafts_size(owner, size, aspect):
    item = submit(owner, size=size)
    assert promotion_initial(item)["aspect_ratio"] == aspect


@pytest.mark.parametrize(
    ("width", "height", "aspect"),
    [
        (1280, 720, "16:9"),
        (720, 1280, "9:16"),
        (1000, 1000, "1:1"),
        (1100, 1000, "1:1"),
        (1500, 1000, "16:9"),
    ],
)
def test_nearest_aspect_ratio(width, height, aspect):
    assert nearest_aspect_ratio(width, height, ("16:9", "9:16", "1:1")) == aspect


@pytest.mark.parametrize(("seconds", "kept"), [(5, 5), (10, 10), (15, 15), (25, 20), (0, 1)])
def test_promotion_keeps_the_duration_within_what_pro_renders(seconds, kept):
    assert nearest_duration(seconds, MODELS[SORA2_PRO]) == kept


def test_a_draft_seed_is_carried_over_when_the_draft_has_one(owner, draft):
    # Sora 2 has no seed in our catalog; should a draft ever carry one, the Pro form starts from it.
    draft.params = {**draft.params, "seed": 4242}
    assert promotion_initial(draft)["seed"] == 4242


@pytest.mark.parametrize("kind", ["pro render", "unfinished draft"])
def test_promoting_what_is_not_a_finished_draft_explains_and_prefills_nothing(
    owner_client, owner, draft, kind
):
    target = promote(owner, draft) if kind == "pro render" else submit(owner)
    response = owner_client.get("/", {"promote": target.pk})
    assert response.status_code == 200
    html = response.content.decode()
    says = "already a Sora 2 Pro render" if kind == "pro render" else "This draft is pending"
    assert says in html and 'data-testid="prefill-message"' in html
    assert response.context["form"].initial.get("parent") is None
    assert 'data-testid="promotion-notice"' not in html and hidden_parent(html) is None


# --- promote: the submit ----------------------------------------------------------------------------------------


def test_a_promotion_records_its_parent_and_reuses_the_drafts_init_image(owner_client, owner, draft, media):
    response = owner_client.post("/renders/", promote_data(draft), **HTMX)
    assert response.status_code == 200
    pro = Render.objects.get(model=PRO)
    assert pro.parent_id == draft.pk and pro.user == owner
    assert pro.params == {
        "aspect_ratio": "16:9",
        "duration_seconds": 10,
        "resolution": "1080p",
        "style_preset": "none",
    }
    assert pro.estimated_cost == Decimal("2.3125")
    assert pro.init_image.name == f"renders/{pro.pk}/init.png"  # a copy in the Pro render's own folder
    assert (media / pro.init_image.name).read_bytes() == (media / draft.init_image.name).read_bytes()
    # The fresh form promotes nothing more: a second Render is a new render, not a second promotion by accident.
    assert 'data-testid="promotion-notice"' not in response.content.decode()
    assert hidden_parent(response.content.decode()) is None


def test_a_new_upload_replaces_the_drafts_init_image_on_promotion(owner_client, draft, media):
    upload = png()
    data = {
        **promote_data(draft),
        "init_image": SimpleUploadedFile("new.png", upload, content_type="image/png"),
    }
    owner_client.post("/renders/", data, **HTMX)
    pro = Render.objects.get(model=PRO)
    assert (media / pro.init_image.name).read_bytes() == upload


def test_a_teammate_may_promote_a_shared_draft_as_their_own_pro_render(teammate_client, teammate, draft):
    response = teammate_client.post("/renders/", promote_data(draft), **HTMX)
    assert response.status_code == 200
    pro = Render.objects.get(model=PRO)
    assert pro.user == teammate and pro.parent_id == draft.pk


@pytest.fixture
def tampered(request, owner, outsider, teammate, draft):
    """A `parent` value the owner's form must refuse, and what the error says."""
    kind = request.param
    if kind == "someone else's private draft":
        return str(finish(submit(outsider)).pk), "does not exist or is not shared with you"
    if kind == "a teammate's private draft":
        return str(finish(submit(teammate, private="on")).pk), "does not exist or is not shared with you"
    if kind == "a pro render":
        return str(promote(owner, draft).pk), "already a Sora 2 Pro render"
    if kind == "an unfinished draft":
        return str(submit(owner).pk), "promote a draft once it has finished"
    if kind == "no such render":
        return str(uuid.uuid4()), "does not exist or is not shared with you"
    return "../../etc/passwd", "Enter a valid UUID."


KINDS = [
    "someone else's private draft",
    "a teammate's private draft",
    "a pro render",
    "an unfinished draft",
    "no such render",
    "garbage",
]


@pytest.mark.parametrize("tampered", KINDS, indirect=True)
@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_a_tampered_parent_is_a_field_error_never_a_500(owner_client, draft, tampered, htmx):
    value, says = tampered
    before = Render.objects.count()
    headers = {**HTMX} if htmx else {}
    response = owner_client.post("/renders/", promote_data(draft, parent=value), **headers)
    assert response.status_code == (200 if htmx else 400)
    html = response.content.decode()
    error = re.search(r'<div class="field-error" id="err-parent" role="alert">([^<]*)</div>', html)
    assert error and says in error.group(1).replace("&#x27;", "'")
    assert Render.objects.count() == before


def test_a_promotion_must_render_on_pro(owner_client, draft):
    response = owner_client.post("/renders/", promote_data(draft, model="sora2", size="1280x720"), **HTMX)
    assert "A promotion renders on Sora 2 Pro" in response.content.decode()
    assert not Render.objects.filter(parent=draft).exists()


def test_a_promotion_whose_draft_image_is_gone_asks_for_it_again(owner_client, draft, media):
    (media / draft.init_image.name).unlink()
    response = owner_client.post("/renders/", promote_data(draft), **HTMX)
    assert "no longer stored: upload it again" in response.content.decode()
    assert not Render.objects.filter(parent=draft).exists()


# --- remix ------------------------------------------------------------------------------------------------------


def test_remix_prefills_the_form_from_the_render_without_a_parent(owner_client, owner, draft):
    pro = promote(
        owner, draft, seed="77", style_preset="cinematic", duration_seconds="7", aspect_ratio="9:16"
    )
    response = owner_client.get("/", {"remix": pro.pk})
    form = response.context["form"]
    assert {k: form.initial[k] for k in ("model", "prompt", "duration_seconds", "seed", "style_preset")} == {
        "model": PRO,
        "prompt": draft.prompt,
        "duration_seconds": 7,
        "seed": 77,
        "style_preset": "cinematic",
    }
    assert form.initial["aspect_ratio"] == "9:16" and form.initial["resolution"] == "1080p"
    html = response.content.decode()
    assert hidden_parent(html) is None and 'data-testid="promotion-notice"' not in html
    assert 'data-testid="remix-notice"' in html and "Its init image is not carried" in html
    assert re.search(r'data-testid="estimate-total">\$1\.62<', html)  # 7 s x $0.23125


# --- re-run exactly ---------------------------------------------------------------------------------------------


def test_rerun_creates_an_identical_render_with_a_new_id(owner_client, owner, draft, media):
    pro = promote(owner, draft, seed="77", style_preset="anime")
    response = owner_client.post(f"/renders/{pro.pk}/rerun/", **HTMX, HTTP_HX_TARGET="render-list")
    assert response.status_code == 200
    again = Render.objects.exclude(pk__in=[draft.pk, pro.pk]).get()
    assert again.pk != pro.pk and again.user == owner and again.state == State.PENDING
    assert (again.model, again.prompt, again.params) == (pro.model, pro.prompt, pro.params)
    assert again.estimated_cost == pro.estimated_cost
    assert (media / again.init_image.name).read_bytes() == (media / pro.init_image.name).read_bytes()
    assert again.init_image.name.startswith(f"renders/{again.pk}/")
    assert again.parent_id == draft.pk  # another take of the same promotion stays in its lineage
    html = response.content.decode()
    assert f'id="render-{again.pk}"' in html  # the new card, for the top of "My renders"
    assert 'id="poll" hx-get=' in html  # polling restarts for it
    assert "Re-running exactly: about $2.31" in html  # the toast says what it costs


def test_rerun_button_on_a_finished_card_shows_the_cost(owner_client, draft):
    html = owner_client.get(f"/renders/{draft.pk}/").content.decode()
    assert re.search(r'data-testid="rerun">Re-run exactly · \$1\.00<', html)
    assert f'href="/?promote={draft.pk}" data-testid="promote">Promote to Pro<' in html
    assert f'href="/renders/{draft.pk}/lineage/"' in html


def test_a_pro_card_links_its_lineage_and_offers_no_promotion(owner_client, owner, draft):
    pro = promote(owner, draft)
    html = owner_client.get(f"/renders/{pro.pk}/").content.decode()
    assert 'data-testid="promote"' not in html
    assert f'href="/renders/{pro.pk}/lineage/" data-testid="lineage"' in html


def test_a_teammate_reruns_a_shared_clip_as_their_own_render(teammate_client, teammate, draft):
    response = teammate_client.post(f"/renders/{draft.pk}/rerun/")
    assert response.status_code == 302 and response["Location"] == "/"
    again = Render.objects.exclude(pk=draft.pk).get()
    assert again.user == teammate and again.prompt == draft.prompt and again.params == draft.params
    assert Render.objects.get(pk=draft.pk).user != teammate  # the original is untouched


def test_rerun_from_a_page_without_the_studio_list_redirects_there(owner_client, draft):
    response = owner_client.post(f"/renders/{draft.pk}/rerun/", **HTMX, HTTP_HX_TARGET="body")
    assert response.status_code == 200 and response["HX-Redirect"] == "/"


def test_a_double_clicked_rerun_with_its_token_is_one_render(owner_client, draft):
    token = str(uuid.uuid4())
    for _ in range(2):
        owner_client.post(f"/renders/{draft.pk}/rerun/", {"client_token": token})
    assert Render.objects.exclude(pk=draft.pk).count() == 1


def test_rerun_whose_init_image_is_gone_says_so_and_renders_nothing(owner_client, draft, media):
    (media / draft.init_image.name).unlink()
    response = owner_client.post(f"/renders/{draft.pk}/rerun/", **HTMX, HTTP_HX_TARGET="render-list")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/plain")
    assert "init image is no longer stored" in response.content.decode()
    assert Render.objects.count() == 1


def test_rerun_over_budget_is_refused_with_the_reason_and_renders_nothing(owner_client, team, draft):
    Budget.objects.create(team=team, monthly_usd=Decimal("1.50"))  # the draft holds $1.00 of it
    response = owner_client.post(f"/renders/{draft.pk}/rerun/", **HTMX, HTTP_HX_TARGET="render-list")
    assert response.status_code == 400
    assert "only $0.50 is left" in response.content.decode()
    assert Render.objects.count() == 1


def test_rerun_needs_post(owner_client, draft):
    assert owner_client.get(f"/renders/{draft.pk}/rerun/").status_code == 405


# --- access -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/?promote={}"),
        ("get", "/?remix={}"),
        ("post", "/renders/{}/rerun/"),
        ("get", "/renders/{}/lineage/"),
    ],
)
def test_an_outsider_gets_404_everywhere(outsider_client, draft, method, url):
    assert getattr(outsider_client, method)(url.format(draft.pk)).status_code == 404
    assert Render.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/?promote={}"),
        ("get", "/?remix={}"),
        ("post", "/renders/{}/rerun/"),
        ("get", "/renders/{}/lineage/"),
    ],
)
def test_a_teammate_sees_a_private_draft_as_an_outsider_would(teammate_client, owner, method, url):
    private = finish(submit(owner, private="on"))
    assert getattr(teammate_client, method)(url.format(private.pk)).status_code == 404


@pytest.mark.parametrize("value", ["not-a-uuid", str(uuid.uuid4())])
def test_promote_or_remix_of_nothing_is_404(owner_client, value):
    assert owner_client.get("/", {"promote": value}).status_code == 404
    assert owner_client.get("/", {"remix": value}).status_code == 404


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/?promote={}"),
        ("get", "/?remix={}"),
        ("post", "/renders/{}/rerun/"),
        ("get", "/renders/{}/lineage/"),
    ],
)
def test_anonymous_users_go_to_login(client, draft, method, url):
    response = getattr(client, method)(url.format(draft.pk))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert Render.objects.count() == 1


def test_anonymous_htmx_rerun_is_sent_to_login(client, draft):
    response = client.post(f"/renders/{draft.pk}/rerun/", **HTMX)
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/login/")


# --- the lineage page -------------------------------------------------------------------------------------------


def panels(html: str) -> list[str]:
    return re.findall(r'<article id="lineage-([0-9a-f-]+)"', html)


def test_lineage_shows_the_draft_and_its_pro_renders_with_the_combined_cost(owner_client, owner, draft):
    first = promote(owner, draft)  # billed $2.3125
    second = promote(owner, draft, duration_seconds="4", billed=Decimal("0.50"))
    for start in (draft, first):  # from the draft or from one of its Pro renders: the same lineage
        response = owner_client.get(f"/renders/{start.pk}/lineage/")
        assert response.status_code == 200
        html = response.content.decode()
        assert panels(html) == [str(draft.pk), str(first.pk), str(second.pk)]
        assert html.count("<video data-sync") == 3
        assert re.search(r'data-testid="lineage-cost">\$3\.81<', html)  # 1.00 + 2.3125 + 0.50
        assert html.count('data-testid="model">Sora 2 Pro<') == 2
        assert html.count('data-testid="state">Completed<') == 3
        assert f'id="lineage-{start.pk}" class="lineage-panel state-completed current"' in html
        assert "&lt;b&gt;neon&lt;/b&gt;" in html and "<b>neon</b>" not in html
        assert "/static/studio/lineage.js" in html and "Play all" in html


def test_lineage_shows_only_what_the_user_may_see_and_counts_only_that(
    teammate_client, teammate, owner, draft
):
    shared = promote(owner, draft)
    private = promote(owner, draft, private="on")
    html = teammate_client.get(f"/renders/{shared.pk}/lineage/").content.decode()
    assert panels(html) == [str(draft.pk), str(shared.pk)]
    assert str(private.pk) not in html
    assert re.search(r'data-testid="lineage-cost">\$3\.31<', html)


def test_lineage_of_a_promotion_from_a_draft_the_user_cannot_see(teammate_client, owner, draft):
    Render.objects.filter(pk=draft.pk).update(private=True)
    shared = promote(owner, Render.objects.get(pk=draft.pk))
    Render.objects.filter(pk=shared.pk).update(private=False)
    html = teammate_client.get(f"/renders/{shared.pk}/lineage/").content.decode()
    assert panels(html) == [str(shared.pk)]
    assert "private to its author" in html and draft.prompt not in html
    assert re.search(r'data-testid="lineage-cost">\$2\.31<', html)


def test_lineage_of_an_unpromoted_draft_offers_the_promotion(owner_client, draft):
    html = owner_client.get(f"/renders/{draft.pk}/lineage/").content.decode()
    assert panels(html) == [str(draft.pk)]
    assert "Not promoted to Pro yet." in html and f'href="/?promote={draft.pk}"' in html


def test_unfinished_renders_show_their_state_instead_of_a_player(owner_client, owner, draft):
    running = promote(owner, draft)
    Render.objects.filter(pk=running.pk).update(state=State.RUNNING, video="", billed_cost=None)
    html = owner_client.get(f"/renders/{draft.pk}/lineage/").content.decode()
    assert html.count("<video data-sync") == 1
    assert "No clip to play: this render is running." in html
    assert re.search(
        r'data-testid="lineage-cost">\$3\.31<', html
    )  # the running render counts at its estimate


# The lineage page, in order (pinned for 1 and 5 promotions: the same number):
#   1. the session, 2. the user (authentication middleware)
#   3. the render, with its author and team, if the user may see it (access.get_render_for_user)
#   4. the root draft and all its promotions the user may see, with their authors (lineage_for)
#   5. the rate card, once, for the re-run buttons' prices (ledger.rate_card)
#   then the context processors, lazily, in the order base.html reads them:
#   6. the memberships with their teams (access.viewer: the "To review" link and the team switcher; the reviewer
#      teams and the active team come from these rows; not a reviewer, so no count query), 7. the team picked
#      (none: the oldest team is the active one), 8. open gateway alerts (the banner, below the header)
LINEAGE_QUERIES = 8


@pytest.mark.parametrize("promotions", [1, 5])
def test_lineage_page_query_count_does_not_grow_with_promotions(
    owner_client, owner, draft, promotions, django_assert_num_queries
):
    children = [promote(owner, draft) for _ in range(promotions)]
    with django_assert_num_queries(LINEAGE_QUERIES):
        response = owner_client.get(f"/renders/{children[-1].pk}/lineage/")
    assert len(panels(response.content.decode())) == promotions + 1
