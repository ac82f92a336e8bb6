"""Prompt memory (issue 12): my recent prompts and the saved prompts I may use (mine, and my teams' shared ones),
searchable; saving the studio form under a name, private or shared with a team I am in; deleting my own (anyone
else's is 404); the prompt's character counter. The browser flow is tests/test_browser_variants.py."""

from __future__ import annotations

import json
import re

import pytest
from conftest import HTMX
from django.urls import reverse

from studio.catalog import MAX_PROMPT_CHARS
from studio.models import Membership, Role, SavedPrompt, Team
from tests.fixtures import client_for, make_render

FORM = {"model": "sora-2-pro", "prompt": "A heron lands on a misty pond", "duration_seconds": "6",
        "resolution": "720p", "aspect_ratio": "9:16", "seed": "12", "style_preset": "cinematic"}  # fmt: skip


def saved(
    owner, name: str, *, team=None, prompt: str = "A saved prompt", model: str = "sora2"
) -> SavedPrompt:
    return SavedPrompt.objects.create(
        user=owner, team=team, name=name, model=model, prompt=prompt, params={"duration_seconds": 5}
    )


def listing(user, q: str = "") -> str:
    response = client_for(user).get(reverse("prompts"), {"q": q} if q else {}, **HTMX)
    assert response.status_code == 200
    return response.content.decode()


def fills(html: str) -> list[dict]:
    """What each entry of the list would put in the form."""
    from html import unescape

    return [json.loads(unescape(raw)) for raw in re.findall(r'data-fill="([^"]*)"', html)]


# --- saving -----------------------------------------------------------------------------------------------------


def test_saving_the_form_keeps_its_prompt_model_and_parameters(owner):
    response = client_for(owner).post(reverse("prompt_save"), {**FORM, "name": "  Heron   at dawn "}, **HTMX)

    assert response.status_code == 200
    prompt = SavedPrompt.objects.get()
    assert (prompt.user, prompt.team, prompt.name) == (owner, None, "Heron at dawn")
    assert (prompt.model, prompt.prompt) == ("sora-2-pro", FORM["prompt"])
    assert prompt.params == {"duration_seconds": 6, "resolution": "720p", "aspect_ratio": "9:16", "seed": 12,
                             "style_preset": "cinematic"}  # fmt: skip
    assert "Heron at dawn" in response.content.decode()  # the list comes back with it
    assert "Saved “Heron at dawn”." in response.content.decode()  # and a toast says so


def test_a_prompt_is_shared_only_with_a_team_i_am_in(owner, team, outsider):
    client_for(owner).post(
        reverse("prompt_save"), {**FORM, "name": "For Acme", "share": str(team.pk)}, **HTMX
    )
    assert SavedPrompt.objects.get().team == team

    elsewhere = Team.objects.get_or_create(name="Elsewhere", slug="elsewhere")[0]
    Membership.objects.create(team=elsewhere, user=outsider, role=Role.ADMIN)
    refused = client_for(owner).post(
        reverse("prompt_save"), {**FORM, "name": "Sneaky", "share": str(elsewhere.pk)}, **HTMX
    )
    assert refused.status_code == 400
    assert refused.content.decode() == "Not saved: You can share a prompt only with a team you are in."
    assert SavedPrompt.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**FORM, "name": ""}, "Name the prompt to save it."),
        ({**FORM, "name": "x" * 81}, "Ensure this value has at most 80 characters (it has 81)."),
        ({**FORM, "name": "Heron", "prompt": ""}, "This field is required."),
        ({**FORM, "name": "Heron", "duration_seconds": "99"}, "Sora 2 Pro renders 1 to 20 seconds."),
        ({**FORM, "name": "Heron", "share": "not-a-team"}, "Enter a valid UUID."),
    ],
)
def test_a_prompt_that_cannot_be_saved_says_why_in_a_toast(owner, fields, message):
    response = client_for(owner).post(reverse("prompt_save"), fields, **HTMX)

    assert response.status_code == 400 and response["Content-Type"].startswith("text/plain")
    assert message in response.content.decode()
    assert not SavedPrompt.objects.exists()


# --- who sees what ----------------------------------------------------------------------------------------------


def test_saved_prompts_are_mine_and_my_teams_shared_ones_never_an_outsiders(owner, teammate, outsider, team):
    saved(owner, "Olivia private", prompt="OLIVIA-PRIVATE a locked drawer")
    saved(owner, "Olivia shared", team=team, prompt="ACME-SHARED a harbour at dawn")
    saved(outsider, "Oscar private", prompt="OSCAR-PRIVATE a hidden door")

    mine, toms, oscars = listing(owner), listing(teammate), listing(outsider)

    assert "OLIVIA-PRIVATE" in mine and "ACME-SHARED" in mine and "OSCAR-PRIVATE" not in mine
    assert "ACME-SHARED" in toms and "OLIVIA-PRIVATE" not in toms and "by olivia" in toms
    assert "ACME-SHARED" not in oscars and "OLIVIA-PRIVATE" not in oscars and "OSCAR-PRIVATE" in oscars
    # A search never reaches past the scope either.
    assert "ACME-SHARED" not in listing(outsider, "harbour")


def test_a_removed_member_no_longer_sees_the_teams_prompts(owner, teammate, team):
    saved(owner, "Olivia shared", team=team, prompt="ACME-SHARED a harbour at dawn")
    Membership.objects.filter(user=teammate, team=team).delete()

    assert "ACME-SHARED" not in listing(teammate)


def test_recent_prompts_are_my_renders_distinct_prompts_newest_first(owner, teammate, team):
    make_render(owner, team=team, prompt="A fox in snow")
    make_render(owner, team=team, prompt="A kite at the beach")
    make_render(owner, team=team, prompt="A fox in snow", model="sora-2-pro", params={"duration_seconds": 3,
                "resolution": "720p", "aspect_ratio": "1:1"})  # fmt: skip
    make_render(teammate, team=team, prompt="TOMS-PROMPT a teammate's render")

    html = listing(owner)

    recent = html[html.index("<h3>Recent</h3>") :]
    assert [f["prompt"] for f in fills(recent)] == ["A fox in snow", "A kite at the beach"]
    params = {"duration_seconds": 3, "resolution": "720p", "aspect_ratio": "1:1"}
    assert fills(recent)[0] == {"prompt": "A fox in snow", "model": "sora-2-pro", "params": params}
    assert "TOMS-PROMPT" not in html


def test_search_finds_saved_prompts_by_name_or_text_and_recent_ones_by_text(owner):
    saved(owner, "Neon alley", prompt="Rain on a city street at night")
    saved(owner, "Meadow", prompt="Wind over tall grass")
    make_render(owner, prompt="A neon sign flickers")

    html = listing(owner, "NEON")

    assert [f["prompt"] for f in fills(html)] == ["Rain on a city street at night", "A neon sign flickers"]
    assert "No saved prompt matches" in listing(owner, "volcano")


def test_prompt_text_is_escaped_in_the_list(owner):
    saved(owner, "<b>bold</b>", prompt='<script>alert("x")</script>')

    html = listing(owner)
    assert "<script>alert" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


# --- deleting ----------------------------------------------------------------------------------------------------


def test_i_delete_my_own_saved_prompt(owner):
    mine = saved(owner, "Mine")

    response = client_for(owner).post(reverse("prompt_delete", args=[mine.pk]), **HTMX)

    assert response.status_code == 200 and not SavedPrompt.objects.exists()
    assert client_for(owner).post(reverse("prompt_delete", args=[mine.pk]), **HTMX).status_code == 404


@pytest.mark.parametrize("person", ["teammate", "admin", "outsider"])
def test_anyone_elses_saved_prompt_is_404_even_when_shared_with_them(request, owner, team, person):
    shared = saved(owner, "Shared", team=team)

    response = client_for(request.getfixturevalue(person)).post(
        reverse("prompt_delete", args=[shared.pk]), **HTMX
    )

    assert response.status_code == 404
    assert SavedPrompt.objects.filter(pk=shared.pk).exists()


def test_only_my_own_saved_prompts_offer_a_delete_button(owner, teammate, team):
    saved(owner, "Shared", team=team)

    assert "prompt-delete" in listing(owner)
    assert "prompt-delete" not in listing(teammate)


# --- the studio page ---------------------------------------------------------------------------------------------


def test_the_studio_page_has_the_prompt_memory_and_a_counter_of_the_catalogs_limit(owner_client, owner, team):
    html = owner_client.get(reverse("studio")).content.decode()

    assert 'id="prompt-memory"' in html and reverse("prompts") in html
    assert f'data-max="{MAX_PROMPT_CHARS}"' in html and f'maxlength="{MAX_PROMPT_CHARS}"' in html
    assert re.search(r'data-testid="prompt-count"[^>]*><span data-count>0</span> / 4,000<', html)
    assert f'<option value="{team.pk}">Share with {team.name}</option>' in html


def test_a_refused_form_keeps_the_count_of_what_was_typed(owner_client):
    response = owner_client.post(
        reverse("submit"), {**FORM, "prompt": "x" * 3812, "duration_seconds": "99"}, **HTMX
    )

    assert re.search(r"<span data-count>3,812</span> / 4,000<", response.content.decode())
