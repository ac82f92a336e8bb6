"""Templates take every model fact from the catalog (and prices from the rate card): none is spelled out in a page.

Two ways to catch a fact written into a template: scan the templates and scripts for the catalog's own values,
and change the catalog under a rendered page and see the page follow.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path

import pytest

from studio import catalog, pricing
from studio.catalog import SORA2, SORA2_PRO
from studio.models import Membership, Rate, Render, Role, State, Team

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.glob("templates/**/*.html"), *ROOT.glob("static/**/*.js")])


def facts() -> list[str]:
    """What a template must not spell out: labels, pitches and quoted keys of the models, and the limits."""
    found = [f'"{catalog.MAX_PROMPT_CHARS}"', str(catalog.SEED_MAX)]
    for spec in catalog.MODELS.values():
        found += [spec.label, spec.short_label, spec.pitch, f'"{spec.key}"', f"'{spec.key}'"]
        if not spec.resolutions:  # priced at one rate: its built-in price
            found.append(pricing.per_second(pricing.RATE_CARD[spec.key]["any"]).removesuffix("/s"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_template_or_script_spells_out_a_model_fact(page):
    assert PAGES, "no templates found"
    text = page.read_text()
    assert [fact for fact in facts() if fact in text] == []


# --- the pages follow a changed catalog ---------------------------------------------------------------------


def make_render(user, model: str, state=State.RUNNING, **fields) -> Render:
    params = (
        {"duration_seconds": 5, "size": "1280x720"}
        if model == SORA2
        else {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9"}
    )
    return Render.objects.create(
        user=user,
        model=model,
        prompt="A kite over the dunes",
        params=params,
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
        state=state,
        **fields,
    )


@pytest.fixture
def changed(monkeypatch):
    """A catalog whose every template-facing fact differs from the real one."""
    draft, pro = catalog.MODELS[SORA2], catalog.MODELS[SORA2_PRO]
    monkeypatch.setitem(
        catalog.MODELS,
        SORA2,
        dataclasses.replace(
            draft,
            label="Sketch (draft)",
            short_label="Sketch",
            pitch="Quick looks",
            durations=(4, 8),
            default_duration=4,
        ),
    )
    monkeypatch.setitem(
        catalog.MODELS,
        SORA2_PRO,
        dataclasses.replace(
            pro,
            label="Final",
            short_label="Final",
            pitch="The one",
            durations=tuple(range(2, 31)),
            resolutions=("2160p",),
        ),
    )
    monkeypatch.setattr(catalog, "MAX_PROMPT_CHARS", 1234)
    monkeypatch.setattr(catalog, "SEED_MAX", 99)
    return catalog.MODELS


def test_the_studio_form_follows_the_catalog(owner_client, changed):
    html = owner_client.get("/").content.decode()
    assert 'maxlength="1234"' in html
    assert 'id="id_duration_pro" min="2" max="30"' in html
    assert re.search(r'<input type="number" name="seed" id="id_seed" min="0" max="99"', html)
    assert re.findall(r'<option value="(\d+)"[^>]*>\d+ s</option>', html) == ["4", "8"]
    assert '<p class="hint" data-models="sora2">Quick looks: $0.10 per second, 4 or 8 s.</p>' in html
    assert (
        '<p class="hint" data-models="sora-2-pro">The one: 2–30 s at 2160p, live per-second rate.</p>' in html
    )


def test_the_form_hint_shows_the_rate_card_of_today(owner_client):
    Rate.objects.update_or_create(
        model=SORA2, rate_key="any", defaults={"usd_per_second": Decimal("0.125"), "source": "admin"}
    )
    html = owner_client.get("/").content.decode()
    assert '<p class="hint" data-models="sora2">Cheap drafts: $0.125 per second, 5, 10 or 15 s.</p>' in html


def test_cards_and_the_live_estimate_name_the_model_as_the_catalog_does(owner_client, owner, changed):
    make_render(owner, SORA2)
    make_render(owner, SORA2_PRO)
    html = owner_client.get("/").content.decode()
    assert re.findall(r'<span class="badge model">([^<]*)</span>', html) == ["Final", "Sketch"]
    estimate = owner_client.post(
        "/estimate/", {"model": SORA2_PRO, "prompt": "x", "duration_seconds": "30"}, HTTP_HX_REQUEST="true"
    )
    assert "30 s × $0.23125/s\n            · Final 1080p" in estimate.content.decode()


def test_the_promotion_notice_names_both_models_as_the_catalog_does(owner_client, owner, changed):
    draft = make_render(owner, SORA2, State.COMPLETED)
    html = owner_client.get(f"/?promote={draft.pk}").content.decode()
    assert "Promote a draft to Final</h2>" in html
    assert "Sketch · 5 s" in html
    assert "Sketch and Final do not share\n          seeds" in html


def test_gallery_detail_and_lineage_name_the_models_as_the_catalog_does(owner_client, owner, changed):
    team = Team.objects.create(name="Acme", slug="acme")
    Membership.objects.create(team=team, user=owner, role=Role.ADMIN)
    draft = make_render(owner, SORA2, State.COMPLETED, team=team)
    pro = make_render(owner, SORA2_PRO, State.COMPLETED, team=team, parent=draft)
    gallery = owner_client.get("/gallery/").content.decode()
    assert re.findall(r'<span class="badge model">([^<]*)</span>', gallery) == ["Final", "Sketch"]
    detail = owner_client.get(f"/renders/{pro.pk}/detail/").content.decode()
    assert "<h1>Final render</h1>" in detail and ">a Sketch draft</a>" in detail
    assert "<h1>Sketch draft</h1>" in owner_client.get(f"/renders/{draft.pk}/detail/").content.decode()
    lineage = owner_client.get(f"/renders/{pro.pk}/lineage/").content.decode()
    assert "A Sketch draft and the Final renders promoted from it." in lineage


def test_the_rate_card_page_names_the_built_in_rate_of_the_pricing_module(owner_client, monkeypatch, changed):
    monkeypatch.setitem(pricing.RATE_CARD, SORA2, {"any": Decimal("0.2")})
    html = owner_client.get("/rates/").content.decode()
    assert "(Sketch: the gateway's $0.20/s; Final: the gateway's own" in html
