"""The defects of issue 12 seen on the pages and the command line, each as the behaviour that must hold now.

The browser-side ones (a live feed, notifications, the ETA, the badge on a narrow screen) are in
tests/test_browser_live.py and tests/test_browser_narrow.py.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from decimal import Decimal
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from conftest import HTMX
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from studio import access
from studio.gateway.client import GatewayClient
from studio.lifecycle.submit import submit_step
from studio.models import Budget, Render, ReviewState, State
from tests.fixtures import client_for, make_render, submit_render

ROOT = Path(__file__).resolve().parent.parent
EXCEPTION_NAMES = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Timeout|Exception)\b")


def sora2(**fields) -> dict:
    return {
        "model": "sora2",
        "prompt": "A red apple rolls",
        "duration_seconds": "5",
        "size": "1280x720",
        **fields,
    }


# --- 2. "My renders": each card links to its detail page, and older renders load on demand -----------------------


def test_each_card_of_my_renders_links_to_its_detail_page(owner_client, owner):
    running = make_render(owner, State.RUNNING)
    done = make_render(owner, State.COMPLETED)
    html = owner_client.get("/").content.decode()
    for item in (running, done):
        card = html[html.index(f'id="render-{item.pk}"') :]
        card = card[: card.index("</article>")]
        assert f'href="{reverse("detail", args=[item.pk])}"' in card


def test_my_renders_beyond_the_first_fifty_load_with_show_older(owner_client, owner):
    base = timezone.now()
    made = [make_render(owner, State.COMPLETED, prompt=f"Render number {n}") for n in range(53)]
    for n, item in enumerate(made):  # distinct, known creation times: number 52 is the newest
        Render.objects.filter(pk=item.pk).update(created_at=base - timezone.timedelta(minutes=60 - n))
    html = owner_client.get("/").content.decode()
    assert html.count('class="card ') == 50
    more = re.search(r'<button[^>]*data-testid="older"[^>]*hx-get="([^"]+)"', html)
    assert more, "a Show older renders button"
    cursor = dict(re.findall(r'<input type="hidden" name="(since|floor|oldest)" value="([^"]*)"', html))
    path, _, query = unescape(more.group(1)).partition("?")
    answer = owner_client.get(path, {**dict(parse_qsl(query)), **cursor}, **HTMX).content.decode()
    older = re.findall(r'<article id="render-([0-9a-f-]+)"', answer)
    assert older == [str(made[n].pk) for n in (2, 1, 0)]  # the three oldest, newest first
    assert 'data-testid="older"' not in answer  # nothing older is left
    poll = re.search(r'<div id="poll"[^>]*>.*?</div>', answer, re.S).group(0)
    assert 'hx-swap-oob="true"' in poll and 'name="oldest"' not in poll  # changes to every card now arrive


def test_show_older_with_a_bad_cursor_is_400(owner_client):
    assert owner_client.get("/renders/older/", {"before": "yesterday"}, **HTMX).status_code == 400


# --- 3. only finished, shared clips are reviewable -------------------------------------------------------------


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED, State.BLOCKED, State.RUNNING])
def test_a_render_that_did_not_finish_is_not_reviewable_and_shows_no_review_state(
    owner, team, reviewer, state
):
    render = make_render(owner, state, team=team)
    assert not access.can_review(reviewer, render)
    browser = client_for(reviewer)
    detail = browser.get(reverse("detail", args=[render.pk])).content.decode()
    assert "Needs review" not in detail and reverse("review", args=[render.pk]) not in detail
    assert "Only finished clips are reviewed" in detail
    response = browser.post(reverse("review", args=[render.pk]), {"state": "approved"}, **HTMX)
    assert response.status_code == 403
    assert Render.objects.get(pk=render.pk).review_state == ReviewState.NEEDS_REVIEW


def test_the_gallerys_failed_filter_shows_no_review_state_or_buttons(owner, team, reviewer):
    failed = make_render(owner, State.FAILED, team=team, error="The gateway could not render it.")
    html = client_for(reviewer).get(reverse("gallery"), {"scope": "team", "state": "failed"}).content.decode()
    card = html[html.index(f'id="clip-{failed.pk}"') :]
    card = card[: card.index("</article>")]
    assert "Needs review" not in card and "review-actions" not in card


# --- 4. the review queue's heading count follows the nav badge ------------------------------------------------


def test_a_decision_in_the_review_queue_updates_its_heading_count_with_the_badge(owner, team, reviewer):
    first, _second = (make_render(owner, State.COMPLETED, team=team) for _ in range(2))
    browser = client_for(reviewer)
    page = browser.get(reverse("review_queue")).content.decode()
    assert 'name="from" value="queue"' in page
    answer = browser.post(
        reverse("review", args=[first.pk]), {"state": "approved", "from": "queue"}, **HTMX
    ).content.decode()
    heading = re.search(r'<span id="queue-count" hx-swap-oob="true">(.*?)</span></span>', answer).group(1)
    badge = re.search(r'<span id="to-review-badge" hx-swap-oob="true">(.*?)</span></span>', answer).group(1)
    assert heading.endswith(">1") and badge.endswith(">1")


# --- 5. errors in words, never an exception's class name ------------------------------------------------------


def dropping(exception):
    """A gateway whose connection fails the way `exception` says."""

    def handler(request):
        raise exception("connection dropped", request=request)

    return GatewayClient(
        base_url="http://gateway.test", credential="k", transport=httpx.MockTransport(handler)
    )


@pytest.mark.parametrize("exception", [httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError])
def test_a_dropped_connection_on_submit_is_stored_in_words(owner, exception):
    render = submit_render(owner, sora2())
    with dropping(exception) as client:
        submit_step(render.pk, client)
    render.refresh_from_db()
    assert render.error and not EXCEPTION_NAMES.search(render.error), render.error
    if render.state == State.PENDING:  # not sent: tried again
        assert "will try again" in render.error and "nothing was billed" in render.error
    else:  # sent, answer lost: an operator checks
        assert render.state == State.SUBMIT_UNKNOWN and "may have" in render.error


def test_an_old_error_naming_an_exception_is_shown_in_words(owner_client, owner):
    stored = "Retrying: Could not reach the gateway (RemoteProtocolError)."
    retrying = make_render(owner, State.PENDING, error_code="retrying", error=stored)
    failed = make_render(owner, State.FAILED, error="The result download was interrupted (ReadError).")
    html = owner_client.get("/").content.decode()
    assert "RemoteProtocolError" not in html and "ReadError" not in html
    assert "Could not reach the gateway" in html
    detail = owner_client.get(reverse("detail", args=[failed.pk])).content.decode()
    assert "ReadError" not in detail and "The result download was interrupted." in detail
    assert retrying.shown_error == "Retrying: Could not reach the gateway."


# --- 7. the live estimate says when a render would exceed a budget ---------------------------------------------


def test_the_live_estimate_says_when_the_team_budget_would_be_exceeded(owner_client, owner, team):
    Budget.objects.create(team=team, monthly_usd=Decimal("0.40"))
    html = unescape(owner_client.post("/estimate/", sora2(), **HTMX).content.decode())
    assert 'data-testid="over-budget"' in html
    assert "only $0.40 is left of team Acme's $0.40 monthly budget" in html
    within = owner_client.post("/estimate/", sora2(duration_seconds="5", model="sora2"), **HTMX)
    Budget.objects.filter(team=team).update(monthly_usd=Decimal("5"))
    assert (
        'data-testid="over-budget"' not in owner_client.post("/estimate/", sora2(), **HTMX).content.decode()
    )
    assert within.status_code == 200


def test_the_live_estimate_says_when_my_own_budget_would_be_exceeded(owner_client, owner, team):
    Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("1.00"))
    html = unescape(owner_client.post("/estimate/", sora2(duration_seconds="15"), **HTMX).content.decode())
    assert "only $1.00 is left of your $1.00 monthly budget" in html


def test_the_studio_page_warns_at_once_when_the_default_render_is_over_budget(owner_client, owner, team):
    Budget.objects.create(team=team, monthly_usd=Decimal("0.10"))
    assert 'data-testid="over-budget"' in owner_client.get("/").content.decode()


# --- 9. wording ------------------------------------------------------------------------------------------------


def test_a_card_does_not_print_the_style_none(owner_client, owner):
    params = {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9", "style_preset": "none"}
    render = make_render(owner, State.COMPLETED, model="sora-2-pro", params=params)
    html = owner_client.get("/").content.decode()
    card = html[html.index(f'id="render-{render.pk}"') :]
    params_line = re.search(r'<p class="params muted">(.*?)</p>', card, re.S).group(1)
    assert "none" not in params_line


def test_the_lineage_page_says_a_frame_size_once(owner, media):
    draft = make_render(owner, State.COMPLETED, params={"duration_seconds": 5, "size": "1920x1080"})
    pro = make_render(owner, State.COMPLETED, model="sora-2-pro", parent=draft)
    html = client_for(owner).get(reverse("lineage", args=[pro.pk])).content.decode()
    assert "1920×1080 · 1080p" not in html
    assert html.count("1920×1080") == 2  # once per render


def test_the_money_command_counts_one_render_in_the_singular(owner, team):
    make_render(owner, State.COMPLETED, team=team, billed_cost=Decimal("0.5"))
    from studio.money import ledger

    render = Render.objects.get(user=owner)
    from django.db import transaction

    with transaction.atomic():
        ledger.hold(render)
    ledger.settle(render.pk)
    out = io.StringIO()
    call_command("money", "spend", team.slug, stdout=out)
    assert " 1 render " in out.getvalue() and "1 renders" not in out.getvalue()


def test_the_emulator_banner_says_renders_are_simulated(owner_client):
    html = owner_client.get("/").content.decode()
    banner = re.search(r'<div class="banner emulator"[^>]*>(.*?)</div>', html, re.S).group(1)
    assert "simulated" in banner and "nothing is billed" not in banner


# --- 10. render --wait / --json print one JSON document ---------------------------------------------------------


def test_render_json_prints_exactly_one_json_document(owner):
    out = io.StringIO()
    call_command("render", "--user", owner.username, "--json", "A red apple rolls", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["state"] == "pending" and Render.objects.filter(pk=printed["id"]).exists()


def test_render_json_from_a_file_prints_one_json_array(owner, tmp_path):
    lines = tmp_path / "batch.jsonl"
    lines.write_text('{"prompt": "first"}\n{"prompt": "second"}\n')
    out = io.StringIO()
    call_command("render", "--user", owner.username, "--json", "--from", str(lines), stdout=out)
    assert [item["prompt"] for item in json.loads(out.getvalue())] == ["first", "second"]


def test_django_q_log_lines_reach_stderr_only_with_verbosity_2(owner, queue, caplog):
    call_command("render", "--user", owner.username, "--json", "A quiet one", stdout=io.StringIO())
    assert not [r for r in caplog.records if r.name == "django-q"]
    call_command(
        "render", "--user", owner.username, "--json", "-v", "2", "A chatty one", stdout=io.StringIO()
    )
    assert [r for r in caplog.records if r.name == "django-q" and "Enqueued" in r.getMessage()]


# --- 11. devstack checks its ports before saying where the studio is --------------------------------------------


def test_devstack_refuses_a_port_in_use_before_printing_where_the_studio_is(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "devstack", "--addr", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env={**_env(), "STUDIO_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Studio at" not in result.stdout
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BYTESPIKE_API_KEY"}}
