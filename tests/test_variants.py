"""Variants (issue 12): "Render ×N" submits N takes of one prompt as one group, held against the budget whole or not
at all; the group stays together on the studio page and in the gallery; its contact sheet is access-checked.

The browser flow (Render ×3, the contact sheet playing in sync, promoting the keeper) is tests/test_browser_variants.py.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from conftest import HTMX
from django.core.management import call_command
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from studio.actions.renders import do_submit_variants
from studio.catalog import SEED_MAX
from studio.forms import RenderForm
from studio.models import Budget, LedgerEntry, LedgerKind, Render, State
from studio.money import ledger
from tests.fixtures import client_for, make_render
from tests.test_money import spent_earlier

SORA2 = {
    "model": "sora2",
    "prompt": "A red kite over a windy beach",
    "duration_seconds": "5",
    "size": "1280x720",
}
PRO = {
    "model": "sora-2-pro",
    "prompt": "A lighthouse beam sweeps across a stormy sea",
    "duration_seconds": "4",
    "resolution": "720p",
    "aspect_ratio": "16:9",
}


def post_form(client, fields: dict, **extra):
    """The studio form as the page sends it: with the page's cursor (drawn a moment ago) riding along."""
    drawn = (timezone.now() - timedelta(seconds=1)).isoformat()
    cursor = {"since": drawn, "floor": drawn}
    return client.post(
        reverse("submit"), {"client_token": str(uuid.uuid4()), **cursor, **fields}, **HTMX, **extra
    )


def holds_of(renders) -> list[Decimal]:
    return sorted(
        LedgerEntry.objects.filter(render__in=renders, kind=LedgerKind.HOLD).values_list("amount", flat=True)
    )


# --- Render ×N --------------------------------------------------------------------------------------------------


def test_render_x3_records_three_takes_as_one_group_with_three_holds_and_three_submissions(
    queue, owner, team
):
    response = post_form(client_for(owner), {**SORA2, "variants": "3"})

    assert response.status_code == 200
    takes = list(Render.objects.order_by("variant_index"))
    assert len(takes) == 3
    assert {r.variant_group for r in takes} != {None} and len({r.variant_group for r in takes}) == 1
    assert [(r.variant_index, r.variant_count) for r in takes] == [(1, 3), (2, 3), (3, 3)]
    assert {r.prompt for r in takes} == {SORA2["prompt"]} and {r.team_id for r in takes} == {team.pk}
    assert len({r.created_at for r in takes}) == 1  # one moment: sorted by newest they stay side by side
    assert holds_of(takes) == [Decimal("0.50")] * 3
    assert queue.names() == ["submit_render"] * 3
    # The answer frames the three new cards as one group, with a link to their contact sheet.
    html = response.content.decode()
    assert html.count('data-testid="variant-group"') == 1
    assert all(f'id="render-{r.pk}"' in html for r in takes)
    assert reverse("variants", args=[takes[0].pk]) in html
    assert "Render ×3" in html  # the fresh form keeps ×3 for the next press


def test_render_x1_is_a_render_of_its_own_with_no_group(queue, owner):
    post_form(client_for(owner), {**SORA2, "variants": "1"})
    post_form(client_for(owner), SORA2)  # no field at all: one, as before variants existed

    assert [(r.variant_group, r.variant_index, r.variant_count) for r in Render.objects.all()] == [
        (None, 0, 0)
    ] * 2


def test_pro_takes_count_their_seeds_up_from_the_one_given(queue, owner):
    post_form(client_for(owner), {**PRO, "seed": "41", "variants": "3"})

    seeds = [r.params["seed"] for r in Render.objects.order_by("variant_index")]
    assert seeds == [41, 42, 43]


def test_takes_without_a_seed_each_draw_their_own(queue, owner):
    post_form(client_for(owner), {**PRO, "variants": "2"})
    post_form(
        client_for(owner), {**SORA2, "seed": "5", "variants": "2"}
    )  # Sora 2 takes no seed: it is dropped

    assert [r.params.get("seed") for r in Render.objects.all()] == [None] * 4


def test_a_seed_whose_takes_would_run_past_the_largest_seed_is_a_field_error(queue, owner):
    response = post_form(client_for(owner), {**PRO, "seed": str(SEED_MAX - 1), "variants": "3"})

    assert response.status_code == 200
    assert re.search(
        r'id="err-seed"[^>]*>With ×3 the seeds run up from this one: choose at most', response.text
    )
    assert not Render.objects.exists()


@pytest.mark.parametrize("bad", ["0", "5", "-1", "three", "2.5"])
def test_a_bad_number_of_takes_is_a_clear_field_error_and_records_nothing(queue, owner, bad):
    response = post_form(client_for(owner), {**SORA2, "variants": bad})

    assert response.status_code == 200
    assert re.search(r'id="err-variants"[^>]*>Render 1 to 4 variants at once.<', response.text)
    assert not Render.objects.exists() and queue.names() == []


def test_the_live_estimate_shows_the_takes_and_their_total(owner_client):
    response = owner_client.post(reverse("estimate"), {**SORA2, "variants": "3"}, **HTMX)

    assert re.search(r'data-testid="estimate-total">\$1\.50<', response.text)
    assert 'data-testid="estimate-variants">×3<' in response.text
    assert "$0.50 each" in response.text
    bad = owner_client.post(reverse("estimate"), {**SORA2, "variants": "9"}, **HTMX)
    assert re.search(r'id="err-variants"[^>]*hx-swap-oob="true">Render 1 to 4 variants at once.<', bad.text)


def test_a_double_clicked_render_x3_is_one_group(queue, owner):
    client, token = client_for(owner), str(uuid.uuid4())
    for _ in range(2):
        client.post(reverse("submit"), {**SORA2, "variants": "3", "client_token": token}, **HTMX)

    assert Render.objects.count() == 3
    assert holds_of(Render.objects.all()) == [Decimal("0.50")] * 3


# --- the budget holds the whole group or none of it -------------------------------------------------------------


@pytest.mark.parametrize("scope", ["team", "member"])
def test_a_group_that_only_partly_fits_the_budget_is_refused_whole(queue, owner, team, scope):
    if scope == "team":
        Budget.objects.create(team=team, monthly_usd=Decimal("10.00"))
    else:
        Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("10.00"))
    spent_earlier(team, owner, "8.50")  # $1.50 left: three $0.50 takes fit, four do not

    refused = post_form(client_for(owner), {**SORA2, "variants": "4"})

    assert refused.status_code == 200
    assert "These 4 variants would cost $2.00, but only $1.50 is left" in refused.text
    assert "Nothing was rendered: 3 would fit, so render ×3 or fewer." in refused.text
    assert not Render.objects.filter(prompt=SORA2["prompt"]).exists()
    assert queue.names() == []

    post_form(client_for(owner), {**SORA2, "variants": "3"})
    takes = Render.objects.filter(prompt=SORA2["prompt"])
    assert takes.count() == 3 and holds_of(takes) == [Decimal("0.50")] * 3


def test_the_live_estimate_warns_of_a_group_in_the_words_its_submit_would_be_refused_with(owner, team):
    Budget.objects.create(team=team, monthly_usd=Decimal("10.00"))
    spent_earlier(team, owner, "8.50")
    client = client_for(owner)

    warned = client.post(reverse("estimate"), {**SORA2, "variants": "4"}, **HTMX).text
    refused = post_form(client, {**SORA2, "variants": "4"}).text

    words = "These 4 variants would cost $2.00, but only $1.50 is left of team"
    fit = "Nothing was rendered: 3 would fit, so render ×3 or fewer."
    assert words in warned and fit in warned
    assert words in refused and fit in refused
    assert "over-budget" not in client.post(reverse("estimate"), {**SORA2, "variants": "3"}, **HTMX).text


def test_a_group_of_which_not_even_one_fits_says_so(queue, owner, team):
    Budget.objects.create(team=team, monthly_usd=Decimal("10.00"))
    spent_earlier(team, owner, "9.80")

    form = RenderForm({**SORA2, "variants": "2"})
    assert form.is_valid()
    with pytest.raises(ledger.BudgetExceeded, match="Nothing was rendered: not even one fits."):
        do_submit_variants(owner, form.order())


def test_concurrent_groups_never_hold_part_of_a_group(queue, owner, teammate, team):
    """Four people press Render ×2 ($1.00) at once with $2.50 left: two groups are held whole, two refused whole."""
    Budget.objects.create(team=team, monthly_usd=Decimal("10.00"))
    spent_earlier(team, owner, "7.50")
    barrier, results = threading.Barrier(4), [None] * 4

    def run(index: int, user) -> None:
        try:
            form = RenderForm({**SORA2, "prompt": f"Concurrent kite {index}", "variants": "2"})
            assert form.is_valid(), form.errors
            barrier.wait(timeout=10)
            results[index] = do_submit_variants(user, form.order())
        except Exception as error:  # noqa: BLE001 - every outcome is asserted below
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, u)) for i, u in enumerate([owner, teammate] * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    made = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, ledger.BudgetExceeded)]
    assert len(made) == 2 and len(refused) == 2, results
    burst = Render.objects.filter(prompt__startswith="Concurrent kite")
    assert burst.count() == 4
    for group in made:
        assert len(group) == 2 and holds_of(group) == [Decimal("0.50")] * 2
    assert ledger.budget_status(Budget.objects.get(team=team)).left == Decimal("0.50")


# --- one group on the page, in the gallery and in a poll ---------------------------------------------------------


def make_group(author, team, count: int = 3, *, model: str = "sora2", state: str = State.COMPLETED, **fields):
    group, now = uuid.uuid4(), timezone.now()
    return [
        make_render(
            author,
            state,
            team=team,
            model=model,
            variant_group=group,
            variant_index=index,
            variant_count=count,
            created_at=now,
            finished_at=now if state == State.COMPLETED else None,
            **fields,
        )
        for index in range(1, count + 1)
    ]


def test_the_studio_page_frames_a_group_with_its_takes_in_order(owner_client, owner, team):
    before = make_render(owner, team=team, prompt="An older render")
    takes = make_group(owner, team)
    after = make_render(owner, team=team, prompt="A newer render")

    html = owner_client.get(reverse("studio")).content.decode()

    group = re.search(r'<section id="group-[^"]+" class="variant-group".*?</section>', html, re.S)
    assert group is not None
    assert [m for m in re.findall(r'id="render-([0-9a-f-]+)"', group.group(0))] == [str(r.pk) for r in takes]
    order = [html.index(f'id="render-{pk}"') for pk in (after.pk, takes[0].pk, before.pk)]
    assert order == sorted(order)  # the group stands where its takes were made
    assert html.count('data-testid="variant-badge"') == 3 and ">2/3<" in html


def test_a_poll_brings_a_group_made_elsewhere_as_one_group(owner_client, owner, team):
    page = owner_client.get(reverse("studio")).content.decode()
    since = re.findall(r'name="(since|floor)" value="([^"]+)"', page)
    takes = make_group(owner, team, 2, state=State.PENDING)

    html = owner_client.get(reverse("poll"), dict(since), **HTMX).content.decode()

    assert html.count('data-testid="variant-group"') == 1
    assert all(f'id="render-{r.pk}"' in html for r in takes)


def test_the_gallery_keeps_a_group_together(owner, team):
    make_render(owner, team=team, prompt="A render on its own")
    takes = make_group(owner, team, 4)

    html = client_for(owner).get(reverse("gallery"), {"scope": "mine"}).content.decode()

    group = re.search(r'<section class="variant-group".*?</section>', html, re.S)
    assert group is not None
    assert re.findall(r'id="clip-([0-9a-f-]+)"', group.group(0)) == [str(r.pk) for r in takes]
    assert "4 variants" in group.group(0) and reverse("variants", args=[takes[0].pk]) in group.group(0)


# --- the contact sheet ----------------------------------------------------------------------------------------


def test_the_contact_sheet_shows_every_take_and_offers_to_promote_the_drafts(owner, teammate, team):
    takes = make_group(owner, team, 3)

    for person in (owner, teammate):
        response = client_for(person).get(reverse("variants", args=[takes[1].pk]))
        assert response.status_code == 200
        html = response.content.decode()
        assert html.count('data-testid="take"') == 3
        assert html.count("<video data-sync") == 0  # no clip files in this test: none is playable
        for take in takes:
            assert f"?promote={take.pk}" in html
        assert "$1.50" in html  # together


def test_an_outsider_gets_404_for_the_contact_sheet(owner, outsider, team):
    takes = make_group(owner, team, 2)

    for take in takes:
        assert client_for(outsider).get(reverse("variants", args=[take.pk])).status_code == 404


def test_a_private_group_is_404_to_the_team(owner, teammate, team):
    takes = make_group(owner, team, 2, private=True)

    assert client_for(teammate).get(reverse("variants", args=[takes[0].pk])).status_code == 404
    assert client_for(owner).get(reverse("variants", args=[takes[0].pk])).status_code == 200


def test_a_render_on_its_own_is_a_contact_sheet_of_one(owner_client, owner):
    render = make_render(owner)

    html = owner_client.get(reverse("variants", args=[render.pk])).content.decode()
    assert html.count('data-testid="take"') == 1


# --- the command line -----------------------------------------------------------------------------------------


def test_render_command_takes_variants_and_prints_one_id_a_line(owner, db):
    out = StringIO()
    call_command(
        "render",
        "--user",
        owner.username,
        "--model",
        "sora-2-pro",
        "--duration",
        "4",
        "--seed",
        "7",
        "--variants",
        "3",
        "A fox in fresh snow",
        stdout=out,
    )

    ids = out.getvalue().split()
    takes = list(Render.objects.order_by("variant_index"))
    assert ids == [str(r.pk) for r in takes]
    assert [r.params["seed"] for r in takes] == [7, 8, 9] and len({r.variant_group for r in takes}) == 1


def test_render_command_refuses_a_bad_number_of_variants(owner, db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="variants: Render 1 to 4 variants at once."):
        call_command("render", "--user", owner.username, "--variants", "5", "A fox", stdout=StringIO())


def test_the_detail_page_of_a_take_links_its_contact_sheet(owner_client, owner, team):
    takes = make_group(owner, team, 2)

    html = owner_client.get(reverse("detail", args=[takes[1].pk])).content.decode()

    assert "Take 2 of 2 of one prompt" in html and reverse("variants", args=[takes[1].pk]) in html


def test_a_from_file_line_may_ask_for_variants(owner, db, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"prompt": "A gull over the pier", "variants": 2}\n{"prompt": "A tram at night"}\n')
    out = StringIO()

    call_command("render", "--user", owner.username, "--from", str(batch), stdout=out)

    assert len(out.getvalue().split()) == 3
    gulls = Render.objects.filter(prompt="A gull over the pier")
    assert gulls.count() == 2 and len({r.variant_group for r in gulls}) == 1
    assert Render.objects.get(prompt="A tram at night").variant_group is None
