"""The gallery at scale: each page's query walks an index in its sort order (no sort of the whole scope).

Speed itself is measured by `make bench` (100,000 renders, SQLite and PostgreSQL); these tests pin the plans that
make it fast: on SQLite, whose planner picks them without table statistics, and on PostgreSQL the indexes the
search and the tag filter need (with sequential scans priced out, since a test table is tiny).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from studio.access import to_review
from studio.gallery import gallery_page, gallery_renders, parse_filters
from studio.models import Profile, Render, Tag
from tests.fixtures import make_render

sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="plans are pinned on SQLite; PostgreSQL's depend on its statistics"
)
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL index")


def plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(row[-1] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: otherwise a scan is always cheapest
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def page_query(user, team, query: str, monkeypatch):
    """The one-page queryset the gallery view runs for `query` (cursor included), caught as gallery_page slices it."""
    filters = parse_filters(QueryDict(query), default_scope="team")
    renders = gallery_renders(user, filters, team)
    sliced = []
    original = type(renders).__getitem__

    def catch(self, key):
        sliced.append(original(self, key))
        return sliced[-1]

    with monkeypatch.context() as patch:
        patch.setattr(type(renders), "__getitem__", catch)
        gallery_page(renders, filters)
    return sliced[-1]


@pytest.fixture
def clips(owner, teammate, team):
    Profile.objects.create(user=owner, active_team=team)
    return [make_render(owner if i % 2 else teammate, team=team) for i in range(30)]


@sqlite_only
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("scope=team", "render_team_newest"),
        ("scope=team&sort=cost", "render_team_cost"),
        ("scope=team&sort=duration", "render_team_duration"),
        ("scope=mine", "render_user_newest"),
        ("scope=mine&sort=cost", "render_user_cost"),
        ("scope=mine&sort=duration", "render_user_duration"),
        ("scope=team&author=teammate-name", "render_user_newest"),
        ("scope=team&tag=campaign&q=dunes", "render_team_newest"),
    ],
)
def test_each_gallery_page_walks_its_index_in_sort_order(
    owner, teammate, team, clips, query, index, monkeypatch
):
    query = query.replace("teammate-name", teammate.username)
    explained = plan(page_query(owner, team, query, monkeypatch))
    assert f"USING INDEX {index} " in explained, explained
    assert "TEMP B-TREE FOR ORDER BY" not in explained, explained


@sqlite_only
@pytest.mark.parametrize(
    ("sort", "key"), [("newest", "created_at"), ("cost", "<expr>"), ("duration", "seconds")]
)
def test_a_cursor_page_starts_its_index_scan_at_the_cursor(owner, team, clips, sort, key, monkeypatch):
    filters = parse_filters(QueryDict(f"sort={sort}"), "team")
    first = gallery_page(gallery_renders(owner, filters, team), filters)
    assert first.next_cursor is not None
    explained = plan(page_query(owner, team, f"sort={sort}&cursor={first.next_cursor.sign()}", monkeypatch))
    # A bound in the index search itself: not every row before the cursor read and thrown away.
    assert f"(team_id=? AND state=? AND {key}<" in explained, explained


@postgres_only
@pytest.mark.parametrize(
    ("renders", "index"),
    [
        (lambda: Render.objects.filter(prompt__icontains="dunes").order_by(), "render_prompt_trgm"),
        (lambda: Tag.objects.filter(name__iexact="Campaign-3").order_by(), "tag_name_upper"),
    ],
    ids=["search", "tag"],
)
def test_search_and_tag_filter_have_an_index_on_postgresql(db, renders, index):
    # icontains is UPPER(prompt) LIKE UPPER('%dunes%'), which only a trigram index answers; iexact is UPPER(name) =
    assert index in plan(renders())


@sqlite_only
def test_the_to_review_count_on_every_page_reads_only_its_index(reviewer, clips):
    with CaptureQueriesContext(connection) as queries:
        assert to_review(reviewer).count() == len(clips)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + queries.captured_queries[-1]["sql"])
        explained = "\n".join(row[-1] for row in cursor.fetchall())
    assert "USING COVERING INDEX render_review_queue" in explained, explained
