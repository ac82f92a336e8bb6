"""The studio page's cursor: every card reaches the page once, added on top when new to it, replaced when not."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.http import QueryDict
from django.utils import timezone

from studio.cursor import LAG, MAX_SHOWN, Cursor, catch_up
from studio.models import Render, State
from tests.conftest import HTMX


def make_render(user, state=State.RUNNING, **fields) -> Render:
    return Render.objects.create(
        user=user,
        model="sora2",
        prompt="A kite over the dunes",
        params={"duration_seconds": 5, "size": "1280x720"},
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
        state=state,
        **fields,
    )


def cursor_of(html: str) -> QueryDict:
    """The cursor an answer leaves in the page's poller."""
    inputs = re.search(r'<div id="poll"[^>]*>(.*?)</div>', html, re.S).group(1)
    query = QueryDict(mutable=True)
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', inputs):
        query.appendlist(name, value)
    return query


def added(html: str) -> list[str]:
    """The ids of the cards a poll answer adds to the top of the list, in order: those in its afterbegin block."""
    if '<div hx-swap-oob="afterbegin:#render-list">' not in html:
        return []
    tags = re.findall(r'<article id="render-([^"]+)"([^>]*)>', html)
    return [pk for pk, attributes in tags if "hx-swap-oob" not in attributes]


def replaced(html: str) -> list[str]:
    return re.findall(r'<article id="render-([^"]+)"[^>]*hx-swap-oob="true"', html)


# --- the cursor itself ----------------------------------------------------------------------------------------


def test_a_card_is_new_to_the_page_unless_shown_or_older_than_the_floor():
    now = timezone.now()
    cursor = Cursor(since=now, floor=now - LAG, shown=frozenset({uuid.uuid4()}))
    shown_id = next(iter(cursor.shown))
    assert cursor.is_new(Render(pk=uuid.uuid4(), created_at=now))
    assert not cursor.is_new(Render(pk=shown_id, created_at=now))
    assert not cursor.is_new(Render(pk=uuid.uuid4(), created_at=now - LAG - timedelta(seconds=1)))


def test_past_max_shown_the_floor_rises_above_the_newest_id_left_out():
    now = timezone.now()
    created = {uuid.uuid4(): now - timedelta(seconds=i) for i in range(MAX_SHOWN + 5)}
    kept = Cursor(since=now, floor=now - LAG).keeping(created)
    newest = sorted(created, key=created.get, reverse=True)
    assert kept.shown == frozenset(newest[:MAX_SHOWN])
    assert created[newest[MAX_SHOWN - 1]] >= kept.floor > created[newest[MAX_SHOWN]]


def test_a_cursor_round_trips_through_the_pollers_inputs():
    now = timezone.now()
    cursor = Cursor(
        since=now, floor=now - LAG, shown=frozenset({uuid.uuid4(), uuid.uuid4()}), oldest=now - LAG * 9
    )
    query = QueryDict(mutable=True)
    for name, value in cursor.params():
        query.appendlist(name, value)
    assert Cursor.from_query(query) == cursor


def test_a_request_from_a_page_without_a_floor_counts_cards_since_its_since_as_new():
    query = QueryDict(mutable=True)
    query["since"] = timezone.now().isoformat()
    query.setlist("shown", ["not-a-uuid"])
    cursor = Cursor.from_query(query)
    assert cursor is not None and cursor.floor == cursor.since and cursor.shown == frozenset()


@pytest.mark.django_db
def test_catch_up_adds_new_cards_replaces_shown_ones_and_forgets_ids_below_the_floor(owner):
    now = timezone.now()
    old = make_render(owner, created_at=now - LAG * 2)
    shown = make_render(owner, created_at=now - timedelta(seconds=5))
    new = make_render(owner, created_at=now - timedelta(seconds=1))
    cursor = Cursor(
        since=now - timedelta(seconds=10), floor=now - LAG * 3, shown=frozenset({old.pk, shown.pk})
    )
    cards_new, cards_changed, later = catch_up(cursor, Render.objects.mine(owner), now, 50)
    assert cards_new == [new]
    assert cards_changed == [shown, old]
    assert later.since == now and later.floor == now - LAG
    assert later.shown == frozenset({shown.pk, new.pk})  # `old` is below the floor now: on the page for good


@pytest.mark.django_db
def test_a_change_stamped_before_a_poll_but_committed_after_it_reaches_the_next_poll(owner):
    """`updated_at` is stamped before the UPDATE commits: a poll running between the two must not lose the change."""
    now = timezone.now()
    shown = make_render(owner, created_at=now - timedelta(seconds=30), updated_at=now - timedelta(seconds=30))
    cursor = Cursor(since=now - timedelta(seconds=10), floor=now - LAG, shown=frozenset({shown.pk}))
    _, first, later = catch_up(cursor, Render.objects.mine(owner), now, 50)
    assert first == []
    # The worker stamped its change a moment before that poll and committed it just after.
    Render.objects.filter(pk=shown.pk).update(state=State.COMPLETED, updated_at=now - timedelta(seconds=1))
    _, second, after = catch_up(later, Render.objects.mine(owner), now + timedelta(seconds=1), 50)
    assert second == [Render.objects.get(pk=shown.pk)]
    # Sent once: the poll after it, still within the margin, does not send the same change again.
    _, third, _ = catch_up(after, Render.objects.mine(owner), now + timedelta(seconds=2), 50)
    assert third == []


def test_the_cards_sent_within_the_margin_round_trip_through_the_pollers_inputs():
    now = timezone.now()
    pk = uuid.uuid4()
    cursor = Cursor(since=now, floor=now - LAG, sent=frozenset({(pk, now - timedelta(seconds=1))}))
    query = QueryDict(mutable=True)
    for name, value in cursor.params():
        query.appendlist(name, value)
    query.appendlist("sent", "not-an-id@2026-01-01T00:00:00+00:00")
    query.appendlist("sent", f"{uuid.uuid4()}@yesterday")
    assert Cursor.from_query(query) == cursor


# --- the answers ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_poll_adds_a_card_made_elsewhere_once_then_replaces_it(owner_client, owner):
    make_render(owner)
    cursor = cursor_of(owner_client.get("/").content.decode())
    elsewhere = make_render(owner)  # e.g. from the command line: the page has not seen it
    first = owner_client.get("/renders/poll/", cursor, **HTMX).content.decode()
    assert added(first) == [str(elsewhere.pk)] and replaced(first) == []
    Render.objects.filter(pk=elsewhere.pk).update(progress=50, updated_at=timezone.now())
    second = owner_client.get("/renders/poll/", cursor_of(first), **HTMX).content.decode()
    assert added(second) == [] and replaced(second) == [str(elsewhere.pk)]


@pytest.mark.django_db
def test_the_poll_adds_several_new_cards_newest_first(owner_client, owner):
    make_render(owner)
    cursor = cursor_of(owner_client.get("/").content.decode())
    now = timezone.now()
    older = make_render(owner, created_at=now)
    newer = make_render(owner, created_at=now + timedelta(milliseconds=1))
    html = owner_client.get("/renders/poll/", cursor, **HTMX).content.decode()
    assert added(html) == [str(newer.pk), str(older.pk)]


@pytest.mark.django_db
def test_a_submit_adds_its_card_and_the_poll_after_it_only_replaces_it(owner_client, owner):
    make_render(owner)
    cursor = cursor_of(owner_client.get("/").content.decode())
    data = {"model": "sora2", "prompt": "A red apple", "duration_seconds": "5", "size": "1280x720"}
    answer = owner_client.post("/renders/", {**data, **cursor}, **HTMX).content.decode()
    new = Render.objects.latest("created_at")
    assert answer.lstrip().startswith(f'<article id="render-{new.pk}"')  # for the top of the list
    after = cursor_of(answer)
    assert str(new.pk) in after.getlist("shown")
    Render.objects.filter(pk=new.pk).update(state=State.SUBMITTING, updated_at=timezone.now())
    poll = owner_client.get("/renders/poll/", after, **HTMX).content.decode()
    assert added(poll) == [] and replaced(poll) == [str(new.pk)]


@pytest.mark.django_db
def test_a_repeated_submit_replaces_the_card_the_page_shows(owner_client, owner):
    cursor = cursor_of(owner_client.get("/").content.decode())
    token = str(uuid.uuid4())
    data = {"model": "sora2", "prompt": "A red apple", "duration_seconds": "5", "client_token": token}
    first = owner_client.post("/renders/", {**data, **cursor}, **HTMX).content.decode()
    second = owner_client.post("/renders/", {**data, **cursor_of(first)}, **HTMX).content.decode()
    render = Render.objects.get(user=owner)
    assert "hx-swap-oob" not in re.search(r"<article [^>]*>", first).group(0)
    assert replaced(second) == [str(render.pk)]


@pytest.mark.django_db
def test_a_card_older_than_the_pages_full_list_is_not_sent_to_it(owner_client, owner, monkeypatch):
    monkeypatch.setattr("studio.views.studio.PAGE_SIZE", 2)
    now = timezone.now()
    beyond = make_render(owner, created_at=now - timedelta(hours=2))
    make_render(owner, created_at=now - timedelta(hours=1))
    make_render(owner, created_at=now - timedelta(minutes=30))
    cursor = cursor_of(owner_client.get("/").content.decode())
    assert "oldest" in cursor
    Render.objects.filter(pk=beyond.pk).update(progress=5, updated_at=timezone.now())
    html = owner_client.get("/renders/poll/", cursor, **HTMX).content.decode()
    assert str(beyond.pk) not in html  # not on the page: an out-of-band swap would find no target
