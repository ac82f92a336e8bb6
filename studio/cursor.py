"""What the studio page's list of cards holds, as its poller tells the server: the cursor.

The page adds a card to its list only where the server says so, so every card arrives once: the server must know
which cards the page already shows. A page shows the cards it was drawn with and every card an answer added since.
Its cursor, kept in the poller's hidden inputs and sent with every request that may add a card, says:

- `since`: changes from then on have not reached the page yet (the next poll asks for them). A row's `updated_at`
  is stamped before its UPDATE commits, so a poll can run between the two and miss the change: each poll therefore
  reads again the changes of the last COMMIT_MARGIN before its own time, and `sent` (each card's id and the
  `updated_at` it was sent with, for cards sent within that margin) keeps it from sending the same change twice
  (a card sent again would restart a clip someone is watching);
- `floor` and `shown`: a card created at or after `floor` is on the page exactly when its id is in `shown`; older
  cards are on the page already. `floor` trails the clock by LAG, so that a card whose row was committed a moment
  after a poll looked (created, by its timestamp, before that poll) is still recognised as new when it next changes;
- `oldest`: when the page was drawn with a full list, its oldest card; older cards are not on the page at all.

Requests that carry a cursor are serialised on the page (hx-sync on #poller), so no two answers race to add a card.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db.models import QuerySet
from django.http import QueryDict

from studio.models import Render

LAG = timedelta(seconds=60)  # longer than a render's row can take to commit and change again
MAX_SHOWN = 50  # at most this many ids ride along; past it, `floor` rises instead
COMMIT_MARGIN = timedelta(seconds=3)  # longer than a render's UPDATE takes to commit after its stamp
_TICK = timedelta(microseconds=1)


def parse_time(value: str) -> datetime | None:
    """An aware ISO-8601 timestamp within datetime's range in UTC, else None."""
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: e.g. year 1 at +14:00 is before year 1 in UTC
        return None


@dataclass(frozen=True)
class Cursor:
    """What a page's list of cards holds (see the module docstring)."""

    since: datetime
    floor: datetime
    shown: frozenset[uuid.UUID] = frozenset()
    oldest: datetime | None = None
    sent: frozenset[tuple[uuid.UUID, datetime]] = frozenset()

    @classmethod
    def for_page(cls, now: datetime, renders: list[Render], full: bool) -> Cursor:
        """The cursor of a page drawn at `now` (read before `renders` were) with these cards."""
        oldest = renders[-1].created_at if full and renders else None
        created = {item.pk: item.created_at for item in renders}
        sent = frozenset(
            (item.pk, item.updated_at) for item in renders if item.updated_at >= now - COMMIT_MARGIN
        )
        return cls(since=now, floor=now - LAG, oldest=oldest, sent=sent).keeping(created)

    @classmethod
    def from_query(cls, query: QueryDict) -> Cursor | None:
        """The cursor a request carries, or None when its `since` is missing or malformed.

        Without a `floor` (a page drawn before there was one), cards created since `since` count as new.
        """
        since = parse_time(query.get("since", ""))
        if since is None:
            return None
        floor = parse_time(query.get("floor", "")) or since
        shown = frozenset(parse_uuids(query.getlist("shown")[: MAX_SHOWN * 2]))
        sent = frozenset(_stamps(query.getlist("sent")[: MAX_SHOWN * 2]))
        oldest = parse_time(query.get("oldest", ""))
        return cls(since=since, floor=floor, shown=shown, oldest=oldest, sent=sent)

    @classmethod
    def fresh(cls, now: datetime) -> Cursor:
        """A cursor for a request that carried none: nothing created before now is new to the page."""
        return cls(since=now, floor=now)

    def is_new(self, render: Render) -> bool:
        """Whether `render` is not on the page yet: the answer must add its card rather than replace it."""
        return render.created_at >= self.floor and render.pk not in self.shown

    def adding(self, render: Render) -> Cursor:
        """The cursor once the answer adds (or replaces) `render`'s card."""
        if render.created_at < self.floor:
            return self
        return replace(self, shown=self.shown | {render.pk})

    def keeping(self, created: Mapping[uuid.UUID, datetime]) -> Cursor:
        """The cursor whose `shown` is the cards of `created` (the page's cards that may be recent: id -> creation
        time) at or after `floor`, at most MAX_SHOWN of them: past that, `floor` rises above the newest left out."""
        recent = sorted(((at, pk) for pk, at in created.items() if at >= self.floor), reverse=True)
        floor = self.floor if len(recent) <= MAX_SHOWN else recent[MAX_SHOWN][0] + _TICK
        return replace(self, floor=floor, shown=frozenset(pk for at, pk in recent if at >= floor))

    def params(self) -> list[tuple[str, str]]:
        """The cursor as the poller's hidden inputs: (name, value) pairs."""
        pairs = [("since", self.since.isoformat()), ("floor", self.floor.isoformat())]
        if self.oldest is not None:
            pairs.append(("oldest", self.oldest.isoformat()))
        pairs += [("sent", f"{pk}@{at.isoformat()}") for pk, at in sorted(self.sent, key=str)]
        return pairs + [("shown", str(pk)) for pk in sorted(self.shown, key=str)]


def catch_up(
    cursor: Cursor, renders: QuerySet[Render], now: datetime, limit: int
) -> tuple[list[Render], list[Render], Cursor]:
    """What a poll answer carries: the cards new to the page and the cards changed on it (newest first, at most
    `limit` in all), and the cursor after it. `renders` are the cards the page may show, read after `now`."""
    changed = renders.filter(updated_at__gte=cursor.since - COMMIT_MARGIN)
    if cursor.oldest is not None:
        changed = changed.filter(created_at__gte=cursor.oldest)
    cards = [
        item for item in changed[: limit + len(cursor.sent)] if (item.pk, item.updated_at) not in cursor.sent
    ]
    cards = cards[:limit]
    new = [item for item in cards if cursor.is_new(item)]
    # Every changed card is on the page once this answer is; with the ids it showed, they are what it may show recently.
    created = {item.pk: item.created_at for item in cards}
    if others := cursor.shown - created.keys():
        created.update(renders.filter(pk__in=others).values_list("pk", "created_at"))
    window = now - COMMIT_MARGIN  # what the next poll reads again: the cards sent since then ride along
    sent = {(pk, at) for pk, at in cursor.sent if at >= window}
    sent.update((item.pk, item.updated_at) for item in cards if item.updated_at >= window)
    later = replace(cursor, since=now, floor=max(cursor.floor, now - LAG), sent=frozenset(sent)).keeping(
        created
    )
    return new, [item for item in cards if not cursor.is_new(item)], later


def _stamps(values: Iterable[str]) -> Iterable[tuple[uuid.UUID, datetime]]:
    for value in values:
        pk, _, at = value.partition("@")
        moment = parse_time(at)
        try:
            if moment is not None:
                yield uuid.UUID(pk), moment
        except ValueError:
            continue


def parse_uuids(values: Iterable[str]) -> Iterable[uuid.UUID]:
    """The values that are UUIDs, as UUIDs (the rest are skipped)."""
    for value in values:
        try:
            yield uuid.UUID(value)
        except ValueError:
            continue
