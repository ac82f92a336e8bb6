"""The poller: a leased loop per cluster that keeps every in-flight render on its polling cadence.

The work is split into shards by render id (`studio.lifecycle.shards`, `STUDIO_POLLER_SHARDS`); each cluster runs
one poller at a time, which holds some shards under database leases (renewed every second) and polls only their
renders. A lone cluster holds them all; clusters against one database share them, and a dead cluster's shards
are taken over by the others' next lease check once its leases lapse. The holder of a shard keeps the schedule of
its renders at the gateway in memory, so a poll whose answer changes nothing costs no database write:

- one query per tick (`feed`) finds what is new or changed (rows whose `updated_at` moved: a submission went
  through, a cancel was asked for, someone else moved a render on) and what is due to be (re)submitted or whose
  download is due again;
- due polls go to a pool of threads that do HTTP only, over one shared keep-alive client; the loop thread applies
  the answers. A start (queued -> running) is written with the next batch, by one conditional update from
  queued for the batch. The other state changes (completed, failed, cancelled, stalled, lost) are written at
  once with the usual conditional update (`transitions.advance`, through `poll.apply_status`) by one writer
  thread with its own connection, so the loop goes on dispatching polls while they are written; the render is not
  polled again until its row has been read back. Progress, the poll count and error count, and `next_poll_at`
  are written in batches (one UPDATE per few hundred rows), and all of it when the run hands over, so a successor
  and the sweep see a truthful schedule;
- a 429 with Retry-After pauses every poll to that gateway, not just the one render's, on every cluster: the
  pause is put in the shared cache, and each run reads it at its lease check (every second);
- a render with a cancel to send goes the old way (`poll.poll_step` in a pool thread, with its own connection,
  closed afterwards): the cancel is tried and the render is polled as usual in the same step.

If the poller dies, what it had not written is at most a batch interval of progress and schedule: its successor
polls those renders a little early, never late. A shard given back to be shared is handed over cleanly: its polls
in flight are applied and its schedule written before its lease is released.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from queue import Empty, SimpleQueue
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import Field, Q, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from studio import cadence, metrics, queue
from studio.gateway.client import GatewayClient
from studio.gateway.types import CredentialsRejected, GatewayError, NotFound, RateLimited, TaskState
from studio.lifecycle import cancel, poll, shards, transitions
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import sweep
from studio.models import AT_GATEWAY, Render, State
from studio.queue import POLLER_LEASE_SECONDS

log = logging.getLogger("studio.lifecycle")

DISPATCH_EVERY = 0.01  # seconds between scans for due polls (answers are applied as they arrive)
COLLECT_WAIT = 0.02  # seconds the loop waits for an answer before looking at the schedule again
FEED_EVERY = 0.25  # seconds between the queries that find new and due work
FEED_MARGIN = timedelta(seconds=1)  # rows changed this long before the last query are read again (commit lag)
PROGRESS_EVERY = 1.0  # seconds between batched writes of progress and error counts
SCHEDULE_EVERY = (
    5.0  # seconds between batched writes of next_poll_at (a successor polls early by at most this)
)
LEASE_EVERY = 1.0  # seconds between lease checks: renew, take free or lapsed shards, give back a surplus
CENSUS_EVERY = 10.0  # seconds between looks for a live cluster that has no poller run
BATCH = 200
SUBMITS_AT_ONCE = 4  # submissions (and cancel steps) the poller has in its pool at once
SUBMIT_TASK_LOST_AFTER = timedelta(
    seconds=10
)  # a pending render not sent by its own task this long is sent here
QUIET_ANSWERS = (TaskState.QUEUED, TaskState.RUNNING)  # an unknown status is parsed as running
FIELDS = (
    "pk",
    "state",
    "model",
    "gateway_task_id",
    "progress",
    "poll_count",
    "poll_errors",
    "next_poll_at",
    "submitted_at",
    "created_at",
    "cancel_requested_at",
    "cancel_note",
    "cancel_attempts",
    "next_attempt_at",
    "lease_until",
)


@dataclass
class Tracked:
    """What the lease holder knows of one render at the gateway; the row is written when this says so."""

    pk: uuid.UUID
    state: str
    model: str
    task_id: str
    progress: int
    poll_count: int
    poll_errors: int
    due: float  # monotonic time of the next poll
    since: datetime  # when the gateway got it (the cadence's clock)
    wants_cancel: bool
    shard: int = 0
    busy: bool = False  # a poll, a cancel step or a state change is in flight
    dirty: bool = False  # progress or counts not yet written
    started_at: datetime | None = None  # the gateway said running; not written yet (`_write_starts`)
    schedule_dirty: bool = False  # next_poll_at not yet written
    next_poll_at: datetime | None = None


def _wants_cancel(row: dict) -> bool:
    return (
        row["cancel_requested_at"] is not None
        and not row["cancel_note"]
        and row["cancel_attempts"] < cancel.MAX_CANCEL_ATTEMPTS
    )


def _submit_due(row: dict, now: datetime) -> bool:
    """A pending render whose retry is due, or whose submit task has not sent it within 10 s (lost)."""
    if row["next_attempt_at"] is not None:
        return row["next_attempt_at"] <= now
    return row["created_at"] <= now - SUBMIT_TASK_LOST_AFTER


def _in_thread(step, *args) -> str:
    """Run a step that needs the database in a pool thread, with its own connection, closed afterwards."""
    try:
        return step(*args)
    except Exception:
        log.exception("%s failed for %s", step.__name__, args[0])
        return "error"
    finally:
        connections.close_all()


def _row(pk: uuid.UUID) -> dict | None:
    """What the poller tracks of a render, while it is at the gateway (None once it has left)."""
    return Render.objects.filter(pk=pk, state__in=AT_GATEWAY).values(*FIELDS).first()


UNREAD = object()  # what the writer thread answers when it could not read the row back (the loop reads it)


def _write_step(pk: uuid.UUID, step) -> dict | None | object:
    """On the writer thread: a state change's conditional update, then the row as it is now (None once it has
    left the gateway; UNREAD if the database failed us). Its connection stays open for the next one (closed and
    opened again after an error or past its age); the run closes it at the end."""
    connection = connections[Render.objects.db]
    try:
        connection.close_if_unusable_or_obsolete()
        render = Render.objects.filter(pk=pk, state__in=AT_GATEWAY).first()
        if render is not None:
            step(render)
    except Exception:
        log.exception("Writing a poll's outcome for render %s failed", pk)
    try:
        return _row(pk)
    except Exception:
        log.exception("Reading render %s back after its state change failed", pk)
        connection.close()
        return UNREAD


def _poll_only(client: GatewayClient, model: str, task_id: str):
    """HTTP only, no database: the answer or the error, for the loop thread to apply."""
    try:
        return client.poll(model, task_id)
    except GatewayError as error:
        return error


def feed_query(
    since: datetime | None,
    now: datetime,
    ours: list[datetime] | None = None,
    scope: Q | None = None,
    fresh: Q | None = None,
):
    """The one query per tick: renders changed since `since` (all at the gateway on the first tick, and in the
    `fresh` shards, just taken) except by our own batched writes (stamped `ours`), pending renders due for a
    (re)submission, and downloads due for a retry whose worker holds no lease; all within `scope` (our shards;
    None: every render)."""
    changed = Q(state__in=AT_GATEWAY) if since is None else Q(updated_at__gte=since)
    if since is not None and ours:
        changed &= ~Q(updated_at__in=ours)
    if since is not None and fresh is not None:
        changed |= Q(state__in=AT_GATEWAY) & fresh
    submits = Q(state=State.PENDING) & (
        Q(next_attempt_at__lte=now)
        | Q(next_attempt_at__isnull=True, created_at__lte=now - SUBMIT_TASK_LOST_AFTER)
    )
    downloads = Q(state=State.DOWNLOADING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    wanted = changed | submits | downloads
    return Render.objects.filter(wanted if scope is None else wanted & scope).values(*FIELDS)


def poller_has_work() -> bool:
    """Whether anything needs the poller: tasks at the gateway, submissions to (re)send, downloads to retry, and
    downloads in progress (its sweep takes one up again the moment its worker dies and its lease lapses)."""
    return Render.objects.filter(
        Q(state__in=[State.PENDING, State.SUBMITTING, *AT_GATEWAY])
        | Q(state=State.DOWNLOADING, next_attempt_at__isnull=False)
        | Q(state=State.DOWNLOADING, lease_until__isnull=False)
    ).exists()


def _pause_key(base_url: str) -> str:
    return "poller:paused-until:" + hashlib.sha256(base_url.encode()).hexdigest()[:16]


def share_pause(base_url: str, until: float) -> None:
    """Tell every cluster to hold its polls to this gateway until `until` (unix time), in the shared cache (the
    database, or Redis when scaled out). A later pause wins; the key expires with it."""
    key = _pause_key(base_url)
    try:
        if (cache.get(key) or 0.0) < until:
            cache.set(key, until, timeout=max(1, math.ceil(until - time.time()) + 1))
    except Exception:  # a cache that is down must not stop the poller: this run still holds its own polls
        log.exception("Could not share the gateway's Retry-After with the other clusters")


def shared_pause(base_url: str) -> float:
    """Until when (unix time) some cluster was told by this gateway to hold its polls; 0 for no one."""
    try:
        return float(cache.get(_pause_key(base_url)) or 0.0)
    except Exception:
        log.exception("Could not read the gateway's shared Retry-After")
        return 0.0


def _case(batch: list[Tracked], name: str) -> RawSQL:
    """CASE id WHEN ... THEN <the value we hold> ... ELSE <the column> END, typed as the column.

    Written as SQL with parameters, not as Django's Case/When: resolving a few hundred When expressions cost the
    loop thread more than the polls themselves."""
    connection = connections[Render.objects.db]
    field = Render._meta.get_field(name)
    pk = Render._meta.pk
    assert isinstance(field, Field) and pk is not None and pk.column and field.column
    quote = connection.ops.quote_name
    params: list[Any] = []
    for entry in batch:
        params.append(pk.get_db_prep_value(entry.pk, connection))
        params.append(field.get_db_prep_value(getattr(entry, name), connection))
    whens = " ".join(["WHEN %s THEN %s"] * len(batch))
    sql = f"CASE {quote(pk.column)} {whens} ELSE {quote(field.column)} END"
    return RawSQL(sql, params, output_field=field)  # noqa: S611 - values are parameters, names quoted


class Poller:
    """One run of the lease holder: the in-memory schedule, the HTTP pool and the batched writes."""

    def __init__(
        self,
        client: GatewayClient,
        pool: ThreadPoolExecutor,
        limit: int,
        held: shards.Shards | None = None,
        writer: ThreadPoolExecutor | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.writer = writer  # one thread, one connection: the state changes polls bring (None: done at once)
        self.writes: dict[Future, Tracked] = {}  # state changes in flight on the writer, each with its entry
        self.limit = limit  # polls in flight at once
        self.shards = held  # None: every render is ours (a lone run, as in tests that drive it by hand)
        self.fresh: set[int] = set()  # shards just taken: the next feed reads all their renders
        self.tracked: dict[uuid.UUID, Tracked] = {}
        self.running: dict[int, uuid.UUID] = {}  # polls in flight: their token, their render
        self.steps: dict[Future, uuid.UUID] = {}  # submissions and cancel steps (they use the database)
        # Every poll puts (its token, its answer) here as it returns, every step (None, its future): the loop
        # thread waits on this one queue, whatever is in flight.
        self.answers: SimpleQueue = SimpleQueue()
        self.tokens = itertools.count()
        self.paused_until = 0.0  # monotonic: a 429's Retry-After holds every poll until then
        self.next_due = (
            0.0  # monotonic: no entry not in flight is due before this (no scan needed until then)
        )
        self.since: datetime | None = None
        self.stamps: list[datetime] = []  # the updated_at of our recent batched writes: the feed skips them
        self.counts = {"polls": 0, "submits": 0, "downloads": 0, "writes_saved": 0}

    # --- the schedule --------------------------------------------------------------------------------------

    def _delay(self, entry: Tracked) -> float | None:
        elapsed = (timezone.now() - entry.since).total_seconds()
        delay = cadence.poll_delay(elapsed / settings.STUDIO_POLL_SCALE, settings.STUDIO_STALL_AFTER_SECONDS)
        return None if delay is None else transitions.scaled(delay)

    def _track(self, row: dict) -> None:
        entry = self.tracked.get(row["pk"])
        if row["state"] not in AT_GATEWAY:
            if entry is not None and not entry.busy:
                del self.tracked[row["pk"]]
            elif entry is not None:
                entry.state = row["state"]  # dropped once its poll in flight returns
            return
        if entry is not None:
            # Someone moved it on (or it is our own write read back): the row's state and cancel win; the
            # progress, counts and schedule are ours (no one else writes them while we hold the lease). A start
            # we have not written yet is still ahead of the row.
            if not (entry.started_at is not None and row["state"] == State.QUEUED):
                entry.state = row["state"]
            entry.wants_cancel = _wants_cancel(row)
            return
        due_at = row["next_poll_at"]
        wait_s = 0.0 if due_at is None else max(0.0, (due_at - timezone.now()).total_seconds())
        self.tracked[row["pk"]] = Tracked(
            pk=row["pk"],
            state=row["state"],
            model=row["model"],
            task_id=row["gateway_task_id"],
            progress=row["progress"],
            poll_count=row["poll_count"],
            poll_errors=row["poll_errors"],
            due=(due := time.monotonic() + wait_s),
            since=row["submitted_at"] or row["created_at"],
            wants_cancel=_wants_cancel(row),
            shard=shards.shard_of(row["pk"], self.shards.count) if self.shards else 0,
            next_poll_at=due_at,
        )
        self.next_due = min(self.next_due, due)

    def _reload(self, pk) -> None:
        """Read a render's row again. A poll of it still in flight stays its only one: the fresh entry is busy
        until that poll returns (its own submission finishing, say, must not send a second poll beside it)."""
        old = self.tracked.pop(pk, None)
        row = _row(pk)
        if row is not None:
            self._track(row)
            if old is not None and old.busy and pk in self.tracked:
                self.tracked[pk].busy = True

    def feed(self) -> None:
        """One query: what changed since the last one, what is due to be submitted or downloaded again."""
        now = timezone.now()
        if self.shards is None:
            scope = fresh = None
        elif not self.shards.held:
            return
        else:
            scope = shards.scope(self.shards.held, self.shards.count)
            fresh = shards.scope(self.fresh, self.shards.count) if self.fresh else None
            if fresh is None and self.fresh:
                fresh = Q()
        rows = list(feed_query(self.since, now, self.stamps, scope, fresh))
        self.fresh.clear()
        self.since = now - FEED_MARGIN
        self.stamps = [stamp for stamp in self.stamps if stamp >= self.since]
        for row in rows:
            if row["state"] == State.PENDING:
                if _submit_due(row, now):  # not one just made: its own submit task is on its way
                    self._submit(row["pk"])
            elif (
                row["state"] == State.DOWNLOADING and row["next_attempt_at"] and row["next_attempt_at"] <= now
            ):
                self._download(row, now)
            else:
                self._track(row)

    def _submit(self, pk) -> None:
        # A few at a time: a batch whose submit tasks are late must not fill the pool's queue ahead of the polls
        # (nor hold up a hand-over, which waits for every step); the rest are read again at the next feed.
        if pk in self.steps.values() or len(self.steps) >= SUBMITS_AT_ONCE:
            return
        self._step(self.pool.submit(_in_thread, submit_step, pk, self.client), pk)
        self.counts["submits"] += 1

    def _download(self, row: dict, now: datetime) -> None:
        if row["lease_until"] is not None and row["lease_until"] >= now:
            return
        if Render.objects.filter(pk=row["pk"], next_attempt_at__lte=now).update(
            next_attempt_at=now + timedelta(seconds=60)
        ):
            queue.enqueue("download_render", row["pk"])
            self.counts["downloads"] += 1

    # --- polling -------------------------------------------------------------------------------------------

    def dispatch(self) -> None:
        now = time.monotonic()
        if now < self.paused_until or now < self.next_due:
            return
        room = self.limit - len(self.running)
        if room <= 0:
            return
        leaving = self.shards.releasing if self.shards else set()
        waiting: list[Tracked] = []
        soonest = float("inf")
        for e in self.tracked.values():
            if e.busy or e.shard in leaving:
                continue
            if e.due <= now:
                waiting.append(e)
            elif e.due < soonest:
                soonest = e.due
        if len(waiting) > room:  # the earliest first; the rest at the next scan
            due, self.next_due = heapq.nsmallest(room, waiting, key=attrgetter("due")), now
        else:
            due, self.next_due = waiting, soonest
        for entry in due:
            entry.busy = True
            if entry.wants_cancel:
                # The old way, whole: the cancel is tried, then the render is polled as usual.
                self._flush([entry], schedule=False)
                self._step(self.pool.submit(_in_thread, poll.poll_step, entry.pk, self.client), entry.pk)
            else:
                token = next(self.tokens)
                self.running[token] = entry.pk
                self.pool.submit(self._poll, token, entry.model, entry.task_id)
            self.counts["polls"] += 1
            metrics.poll_sent(now - entry.due)

    def _poll(self, token: int, model: str, task_id: str) -> None:
        """In a pool thread: HTTP only; the answer (or what went wrong) goes to the loop thread."""
        try:
            answer: Any = _poll_only(self.client, model, task_id)
        except Exception as error:  # noqa: BLE001 - handed to the loop thread, which logs it
            answer = error
        self.answers.put((token, answer))

    def _step(self, future: Future, pk: uuid.UUID) -> None:
        self.steps[future] = pk
        future.add_done_callback(lambda done: self.answers.put((None, done)))

    def collect(self, timeout: float) -> None:
        """Apply the answers that arrived (waiting up to `timeout` for the first)."""
        if not self.running and not self.steps and not self.writes:
            time.sleep(timeout)
            return
        try:
            arrived = [self.answers.get(timeout=timeout)]
        except Empty:
            return
        while True:
            try:
                arrived.append(self.answers.get_nowait())
            except Empty:
                break
        for token, answer in arrived:
            if token is None and answer in self.writes:  # a state change was written
                self._retrack(self.writes.pop(answer), answer.result())
                continue
            if token is None:  # a step finished
                pk = self.steps.pop(answer, None)
                if pk is not None and pk in self.tracked:
                    self._reload(pk)
                continue
            pk = self.running.pop(token)
            entry = self.tracked.get(pk)
            if entry is None:
                continue
            entry.busy = False
            if entry.state not in AT_GATEWAY:  # moved on by someone else while the poll was in flight
                del self.tracked[pk]
                continue
            try:
                if isinstance(answer, Exception) and not isinstance(answer, GatewayError):
                    raise answer
                self._apply(entry, answer)
            except Exception:
                log.exception("Applying a poll of render %s failed", pk)
                self._reload(pk)

    def _apply(self, entry: Tracked, answer) -> None:
        if isinstance(answer, GatewayError):
            self._failed(entry, answer)
            return
        if answer.state not in QUIET_ANSWERS:
            self._write_through(entry, lambda render: poll.apply_status(render, answer))
            return
        if answer.state == TaskState.RUNNING and entry.state == State.QUEUED:
            # Written with the next batch, by a conditional update from queued (`_write_starts`).
            entry.state, entry.started_at = State.RUNNING, timezone.now()
            entry.dirty = True
        progress = entry.progress
        if answer.progress is not None and not (
            answer.state == TaskState.QUEUED and entry.state == State.RUNNING
        ):
            progress = (
                max(answer.progress, entry.progress) if entry.state == State.RUNNING else answer.progress
            )
        if progress != entry.progress or entry.poll_errors:
            entry.dirty = True
        else:
            self.counts["writes_saved"] += 1
        entry.progress, entry.poll_errors = progress, 0
        entry.poll_count += 1
        self._schedule(entry)

    def _failed(self, entry: Tracked, error: GatewayError) -> None:
        if isinstance(error, RateLimited):
            # The gateway asked the studio to slow down: every poll waits, not just this render's, and every
            # cluster's (they learn it from the shared cache at their next lease check).
            wait_s = max(error.retry_after, 0.0)
            self.paused_until = max(self.paused_until, time.monotonic() + wait_s)
            share_pause(self.client.base_url, time.time() + wait_s)
            log.warning("The gateway answered 429; pausing every poll for %.1f s", error.retry_after)
        errors = entry.poll_errors + 1
        if (
            (isinstance(error, NotFound) and errors >= poll.LOST_TASK_AFTER_404S)
            or isinstance(error, CredentialsRejected)
            or errors == poll.POLL_ERROR_ALERT_AFTER
        ):
            self._write_through(entry, lambda render: poll._poll_failed(render, error))  # noqa: SLF001
            return
        log.warning("Polling render %s failed (%s): %s", entry.pk, type(error).__name__, error.message)
        entry.poll_errors, entry.poll_count, entry.dirty = errors, entry.poll_count + 1, True
        self._schedule(entry)
        entry.due = max(entry.due, self.paused_until)

    def _schedule(self, entry: Tracked) -> None:
        delay = self._delay(entry)
        if delay is None:  # past the hard deadline: stalled, written at once
            self._write_through(entry, lambda render: poll._schedule_next(render))  # noqa: SLF001
            return
        entry.due = time.monotonic() + delay
        self.next_due = min(self.next_due, entry.due)
        entry.next_poll_at = timezone.now() + timedelta(seconds=delay)
        entry.schedule_dirty = True

    def _write_through(self, entry: Tracked, step) -> None:
        """A change the row must show now: write what is pending, then hand the step's own conditional update to
        the writer thread, so that the loop goes on dispatching polls meanwhile. The render is busy (not polled)
        until the writer is done and its row has been read again."""
        self._flush([entry], schedule=False)
        entry.busy = True
        if self.writer is None:  # a run driven by hand, without a writer: at once
            self._retrack(entry, _write_step(entry.pk, step))
            return
        future = self.writer.submit(_write_step, entry.pk, step)
        self.writes[future] = entry
        future.add_done_callback(lambda done: self.answers.put((None, done)))

    def _retrack(self, entry: Tracked, row) -> None:
        """The row as a state change left it: tracked again while at the gateway in a shard we hold. An entry
        that is no longer the one tracked (its shard was lost, then taken again: a fresh entry from the feed, maybe
        with a poll out) is left alone; the fresh one is the render's only one."""
        if self.tracked.get(entry.pk) is not entry:
            return
        if row is UNREAD:
            # The writer could not read it back: the loop thread reads it (and raises if it can't). The write is
            # over, and no poll of it is out (a render being written is not polled).
            entry.busy = False
            self._reload(entry.pk)
            return
        del self.tracked[entry.pk]
        if row is not None and (
            self.shards is None or shards.shard_of(entry.pk, self.shards.count) in self.shards.held
        ):
            self._track(row)

    def adopt_pause(self) -> None:
        """Hold every poll as long as another cluster was told to by the gateway (a 429 it got)."""
        wait_s = shared_pause(self.client.base_url) - time.time()
        if wait_s > 0:
            self.paused_until = max(self.paused_until, time.monotonic() + wait_s)

    # --- batched writes ------------------------------------------------------------------------------------

    def _flush(self, entries: list[Tracked], *, schedule: bool) -> int:
        """Write the pending progress, counts (and schedule) of `entries`: one UPDATE per batch, and only for
        rows still at the gateway (someone else may have moved one on)."""
        if schedule:
            todo = [e for e in entries if e.dirty or e.schedule_dirty]
        else:
            todo = [e for e in entries if e.dirty]
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            self._write_starts([e for e in batch if e.started_at is not None])
            names = ["progress", "poll_count", "poll_errors"] + (["next_poll_at"] if schedule else [])
            fields: dict[str, Any] = {name: _case(batch, name) for name in names}
            if any(e.dirty for e in batch):
                stamp = timezone.now()
                fields["updated_at"] = Value(stamp)  # the page's cards changed
                self.stamps.append(stamp)
            Render.objects.filter(pk__in=[e.pk for e in batch], state__in=AT_GATEWAY).update(**fields)
            for entry in batch:
                entry.dirty = False
                if schedule:
                    entry.schedule_dirty = False
        return len(todo)

    def _write_starts(self, starting: list[Tracked]) -> None:
        """queued -> running for renders the gateway said are running: one conditional update (from queued) for
        the batch; a row someone else moved on meanwhile is left as it is."""
        if not starting:
            return
        stamp = timezone.now()
        self.stamps.append(stamp)
        moved = Render.objects.filter(pk__in=[e.pk for e in starting], state=State.QUEUED).update(
            state=State.RUNNING, started_at=_case(starting, "started_at"), updated_at=Value(stamp)
        )
        started = [e.pk for e in starting]
        if moved != len(starting):  # some were moved on meanwhile: ours are those stamped by this update
            started = list(
                Render.objects.filter(pk__in=started, updated_at=stamp).values_list("pk", flat=True)
            )
        for entry in starting:
            entry.started_at = None
        for pk in started:
            log.info("Render %s is now %s", pk, State.RUNNING)  # as transitions.advance says it

    def flush(self, *, schedule: bool) -> None:
        """Write every render's pending changes but those whose state change the writer thread is making."""
        writing = {entry.pk for entry in self.writes.values()}
        self._flush([e for e in self.tracked.values() if e.pk not in writing], schedule=schedule)

    # --- shards ---------------------------------------------------------------------------------------------

    def took(self, claimed: set[int]) -> None:
        """Shards just taken: the next feed reads every render of theirs at the gateway."""
        self.fresh |= claimed

    def lost(self, lost: set[int]) -> None:
        """Shards someone else holds now: forget their renders without writing (the row is theirs to write)."""
        for pk in [pk for pk, e in self.tracked.items() if e.shard in lost]:
            del self.tracked[pk]
        self.fresh -= lost

    def give_back(self) -> None:
        """Release the shards being given back whose polls have all returned, their schedule written first."""
        if self.shards is None or not self.shards.releasing:
            return
        leaving = self.shards.releasing
        entries = [e for e in self.tracked.values() if e.shard in leaving]
        busy = {e.shard for e in entries if e.busy} | {
            shards.shard_of(pk, self.shards.count) for pk in self.steps.values()
        }
        done = leaving - busy
        if not done:
            return
        gone = [e for e in entries if e.shard in done]
        self._flush(gone, schedule=True)
        for entry in gone:
            del self.tracked[entry.pk]
        self.fresh -= done
        self.shards.release(done)
        log.info("The poller gave back shards %s", sorted(done))

    def drain(self) -> None:
        """Wait for every poll and step in flight and apply it (the run is handing over)."""
        while self.running or self.steps or self.writes:
            self.collect(0.1)


@contextlib.contextmanager
def _writer_thread() -> Iterator[ThreadPoolExecutor]:
    """One thread, with its own connection, for the state changes polls bring; the connection is closed at the
    end of the run."""
    with ThreadPoolExecutor(1, thread_name_prefix="poller-writer") as writer:
        try:
            yield writer
        finally:
            writer.submit(connections.close_all).result()


def run_poller(
    max_seconds: float | None = None,
    tick: float = 0.2,
    wait_for_lease: float = 0.0,
    stop: threading.Event | None = None,
) -> dict:
    """Poll every due render of this cluster's shards concurrently until nothing is in flight or the run's time
    is up.

    One run per cluster at a time holds the cluster's run lease; a second one returns at once (after sending
    itself on to a live cluster that has no run, when django-q2 reports one). The run takes its share of the
    shards and polls their renders. When its time is up with work left it hands over to a fresh task (writing its
    schedule first), so no single task outlives the cluster's timeout. The once-a-minute sweep starts a new one if
    every run died. `stop` ends the run early, handing over as when its time is up.
    """
    held = shards.Shards(settings.STUDIO_POLLER_SHARDS, POLLER_LEASE_SECONDS)
    give_up = time.monotonic() + wait_for_lease
    while not held.start():
        if time.monotonic() >= give_up:
            if held.clusters_without_a_run():
                # This cluster has its run; another live one has none: send this task on (the shared queue
                # hands it to whichever cluster asks first, so it may take a few hops).
                queue.enqueue("run_poller")
                return {"ran": False, "sent_on": True}
            return {"ran": False}
        time.sleep(0.5)
    max_seconds = settings.STUDIO_POLLER_RUN_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + max_seconds
    client = transitions.client_factory()
    threads = settings.STUDIO_POLLER_THREADS
    work_left = True
    lost = False
    poller: Poller | None = None
    try:
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="poller") as pool,
            _writer_thread() as writer,
        ):
            poller = Poller(client, pool, limit=threads * 2, held=held, writer=writer)
            next_feed = next_lease = next_sweep = next_dispatch = 0.0
            next_census = time.monotonic() + CENSUS_EVERY
            next_progress = time.monotonic() + PROGRESS_EVERY
            next_schedule = time.monotonic() + SCHEDULE_EVERY
            ticks = 0
            while ticks == 0 or (time.monotonic() < deadline and not (stop is not None and stop.is_set())):
                ticks += 1  # at least one tick, however late the run got going
                now = time.monotonic()
                if now >= next_lease:
                    next_lease = now + LEASE_EVERY
                    change = held.check()
                    if change is None:
                        log.warning("The poller lost its lease; stopping")
                        lost = True
                        break
                    poller.lost(change.lost)
                    poller.took(change.claimed)
                    poller.adopt_pause()
                    if change.claimed:
                        next_feed = now  # read the new shards' renders now
                if now >= next_census:
                    next_census = now + CENSUS_EVERY
                    if held.clusters_without_a_run():
                        queue.enqueue("run_poller")  # a live cluster with no run: it takes its share
                if now >= next_feed:
                    next_feed = now + min(FEED_EVERY, tick)
                    poller.feed()
                    if not (poller.tracked or poller.running or poller.steps or poller.writes):
                        if not poller_has_work():
                            work_left = False
                            break
                if now >= next_sweep:
                    next_sweep = now + 5
                    work_left = sweep(files=False).get("in_flight", True)  # files: the scheduled sweep's
                if time.monotonic() >= next_dispatch:  # a scan of the schedule at most every few ms
                    next_dispatch = time.monotonic() + DISPATCH_EVERY
                    poller.dispatch()
                poller.collect(min(tick, COLLECT_WAIT))
                poller.give_back()
                if time.monotonic() >= next_schedule:
                    next_schedule = time.monotonic() + SCHEDULE_EVERY
                    next_progress = time.monotonic() + PROGRESS_EVERY
                    poller.flush(schedule=True)
                elif time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_EVERY
                    poller.flush(schedule=False)
            else:
                work_left = poller_has_work()
            poller.drain()
            if not lost:
                poller.flush(schedule=True)  # the hand-over: the successor starts from a truthful schedule
    finally:
        client.close()
        held.close()
    if work_left:
        queue.enqueue("run_poller")
    counts = poller.counts if poller is not None else {}
    return {"ran": True, **counts, "work_left": work_left}
