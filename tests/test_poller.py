"""The poller keeps the schedule in memory: a poll whose answer changes nothing writes nothing, the schedule is
written on hand-over, a 429 slows every poll to that gateway, and changes made by others (a cancel) still reach it.

What is asserted is what the database and the gateway's own log of polls show, in order; no wall-clock bounds.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from studio.actions.renders import do_cancel_render, do_submit_render
from studio.forms import RenderForm
from studio.gateway.client import GatewayClient
from studio.lifecycle.poller import run_poller
from studio.lifecycle.submit import submit_step
from studio.models import Render, State
from tests.conftest import fresh, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SORA2 = {"model": "sora2", "prompt": "A red apple rolls across a wooden table", "duration_seconds": "5"}


@pytest.fixture(scope="module")
def still_emulator(tmp_path_factory):
    """An emulator so slow that a task stays queued (the same answer, poll after poll) for the whole test."""
    from studio.emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(speed=0.01, fps=8, data_dir=tmp_path_factory.mktemp("still"))).start()
    yield emu
    emu.stop()


@pytest.fixture
def still(gateway, still_emulator, settings):
    still_emulator.clear_faults()
    settings.BYTESPIKE_BASE_URL = still_emulator.base_url
    yield still_emulator
    still_emulator.clear_faults()


def sent(user, prompt: str = SORA2["prompt"]) -> Render:
    form = RenderForm({**SORA2, "prompt": prompt})
    assert form.is_valid(), form.errors
    render = do_submit_render(user, form.order())
    with GatewayClient() as client:
        assert submit_step(render.pk, client) == "submitted"
    return fresh(render)


def polls_of(emulator, render: Render) -> list[float]:
    return emulator.poll_log().get(render.gateway_task_id, {}).get("polls", [])


def when(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, tz=UTC)


@contextlib.contextmanager
def forgotten_pause(client: GatewayClient):
    """The shared cache outlives a test's database rows: the pause is removed afterwards, for the next test."""
    from django.core.cache import cache

    from studio.lifecycle.poller import _pause_key

    try:
        yield
    finally:
        cache.delete(_pause_key(client.base_url))


def poll_in_background(until) -> list[str]:
    """Run the poller in a thread until `until()` holds, then stop it as a hand-over would; the SQL it sent
    (from every connection opened meanwhile: a poller could write from its pool threads)."""
    sql: list[str] = []
    stop = threading.Event()

    def record(execute, statement, params, many, context):
        sql.append(statement)
        return execute(statement, params, many, context)

    def wrap(sender, connection, **kwargs) -> None:
        if record not in connection.execute_wrappers:
            connection.execute_wrappers.append(record)

    def run() -> None:
        try:
            wrap(None, connection)
            run_poller(max_seconds=120, tick=0.05, stop=stop)
        finally:
            connections.close_all()

    connection_created.connect(wrap)
    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(until, timeout=60, interval=0.02)
    finally:
        stop.set()
        thread.join()
        connection_created.disconnect(wrap)
    return sql


def test_polls_whose_answer_changes_nothing_write_nothing(still, owner, queue):
    render = sent(owner)
    queue.pending()

    sql = poll_in_background(lambda: len(polls_of(still, render)) >= 5)

    polls = polls_of(still, render)
    writes = [s for s in sql if s.startswith("UPDATE") and "poll_count" in s]
    assert len(polls) >= 5  # queued, queued, queued...: nothing to write
    assert len(writes) == 1  # the hand-over's batch, not one write per poll
    render = fresh(render)
    assert render.state == State.QUEUED
    assert render.poll_count == len(polls)  # the count the batch wrote is the gateway's


def test_the_hand_over_writes_a_truthful_schedule(still, owner, queue):
    render = sent(owner)
    queue.pending()
    Render.objects.filter(pk=render.pk).update(next_poll_at=timezone.now())

    poll_in_background(lambda: len(polls_of(still, render)) >= 3)

    polls = polls_of(still, render)
    # The successor and the sweep read the next poll from the row: it follows the last poll the gateway saw.
    assert fresh(render).next_poll_at > when(polls[-1])


def test_a_429_with_retry_after_holds_every_poll_to_that_gateway(still, owner, queue):
    first = sent(owner, "The first render")
    others = [sent(owner, f"Another render {n}") for n in range(3)]
    queue.pending()
    # The first is due now, the others two seconds later: the 429 answers the first one's poll.
    Render.objects.filter(pk=first.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    Render.objects.filter(pk__in=[r.pk for r in others]).update(
        next_poll_at=timezone.now() + timedelta(seconds=2)
    )
    still.add_fault("poll", status=429, retry_after=3)

    with GatewayClient() as client, forgotten_pause(client):
        poll_in_background(lambda: all(len(polls_of(still, r)) >= 2 for r in [first, *others]))

    answered_429 = polls_of(still, first)[0]
    later = [t for r in [first, *others] for t in polls_of(still, r) if t > answered_429]
    assert min(later) >= answered_429 + 3  # no render of that gateway was polled during its Retry-After


def test_a_cancel_asked_for_while_the_poller_runs_reaches_the_gateway(still, owner, queue):
    render = sent(owner)
    queue.pending()
    done = threading.Event()

    def cancel_once_polled() -> None:
        try:
            wait_for(lambda: len(polls_of(still, render)) >= 2, timeout=30, interval=0.02)
            do_cancel_render(fresh(render))
        finally:
            done.set()
            connections.close_all()

    thread = threading.Thread(target=cancel_once_polled)
    thread.start()
    run_poller(max_seconds=30, tick=0.05)  # returns once nothing is in flight
    thread.join()

    render = fresh(render)
    assert render.state == State.CANCELLED
    assert still.task(render.gateway_task_id)["status"] == "cancelled"


def test_a_render_just_made_is_left_to_its_own_submit_task(still, owner, queue):
    """The feed reads every row changed since the last tick, new drafts too: one whose submit task is on its way
    is not sent by the poller (only one left pending past the task's 10 s, or due for a retry, is)."""
    polled = sent(owner)
    queue.pending()
    form = RenderForm({**SORA2, "prompt": "A draft just submitted"})
    assert form.is_valid(), form.errors
    draft = do_submit_render(owner, form.order())
    before = still.submissions

    poll_in_background(lambda: len(polls_of(still, polled)) >= 15)  # several ticks have read the draft's row

    assert fresh(draft).state == State.PENDING
    assert still.submissions == before
    assert queue.names().count("submit_render") == 1  # its own task is still there to send it


def test_reading_a_render_again_while_its_poll_is_in_flight_sends_no_second_poll(still, owner):
    """A render's own submission finishing (or any step) reads its row again; if a poll of it is still out, the
    fresh entry must wait for that poll, not send a second one beside it (two polls of one task at once)."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.lifecycle.poller import Poller

    render = sent(owner)
    release = threading.Event()

    class Hanging(GatewayClient):
        calls = 0

        def poll(self, model, task_id):
            Hanging.calls += 1
            release.wait(timeout=30)
            return super().poll(model, task_id)

    with Hanging() as client, ThreadPoolExecutor(4) as pool:
        poller = Poller(client, pool, limit=4)
        poller.feed()
        Render.objects.filter(pk=render.pk).update(next_poll_at=timezone.now())
        poller.tracked[render.pk].due = 0  # due now
        poller.dispatch()
        assert len(poller.running) == 1
        poller._reload(render.pk)  # noqa: SLF001  (what a finished step does)
        poller.tracked[render.pk].due = 0
        poller.dispatch()
        in_flight = len(poller.running)
        release.set()
        poller.collect(timeout=10)
    connections.close_all()
    assert in_flight == 1
    assert Hanging.calls == 1


def answered(state: str, progress: int | None = None):
    from studio.gateway.types import TaskState, TaskStatus

    return TaskStatus(task_id="t", state=TaskState(state), raw_status=state, progress=progress)


def test_a_start_is_written_with_the_batch_from_queued_only(still, owner, caplog):
    """The gateway saying "running" is written with the next batch, by one conditional update from queued: the
    row shows running with its start time; a render someone else moved on meanwhile keeps what they wrote."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.lifecycle.poller import Poller

    started, moved_on = sent(owner, "Starts"), sent(owner, "Cancelled meanwhile")
    with GatewayClient() as client, ThreadPoolExecutor(1) as pool:
        poller = Poller(client, pool, limit=1)
        poller.feed()
        for render in (started, moved_on):
            poller._apply(poller.tracked[render.pk], answered("running", 10))  # noqa: SLF001
        assert fresh(started).state == State.QUEUED  # not yet: with the batch
        Render.objects.filter(pk=moved_on.pk).update(state=State.CANCELLED)
        with caplog.at_level("INFO", logger="studio.lifecycle"):
            poller.flush(schedule=False)

    started, moved_on = fresh(started), fresh(moved_on)
    assert (started.state, started.progress, started.poll_count) == (State.RUNNING, 10, 1)
    assert started.started_at is not None
    assert f"Render {started.pk} is now running" in caplog.text
    assert f"Render {moved_on.pk} is now running" not in caplog.text
    assert moved_on.state == State.CANCELLED and moved_on.started_at is None


def test_no_poll_goes_out_while_a_renders_state_change_is_being_written(still, owner, queue):
    """A completion is written by the writer thread while the loop goes on; the render is not polled again until
    its row has been read back (and, once downloading, it is not polled at all)."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.gateway.types import TaskState, TaskStatus
    from studio.lifecycle.poller import Poller

    render = sent(owner)
    queue.pending()
    writing = threading.Event()
    release = threading.Event()

    def hold() -> None:
        writing.set()
        release.wait(timeout=30)

    done = TaskStatus(
        task_id=render.gateway_task_id,
        state=TaskState.COMPLETED,
        raw_status="completed",
        progress=100,
        result_url=f"{still.base_url}/files/x.mp4",
        billed_credits=None,
    )
    with GatewayClient() as client, ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(1) as writer:
        writer.submit(hold)  # the writer is busy: the completion waits behind it
        poller = Poller(client, pool, limit=2, writer=writer)
        poller.feed()
        entry = poller.tracked[render.pk]
        poller._apply(entry, done)  # noqa: SLF001
        assert writing.wait(timeout=30)
        entry.due = 0
        poller.dispatch()
        sent_while_writing = len(poller.running)
        state_while_writing = fresh(render).state
        release.set()
        poller.drain()
        writer.submit(connections.close_all).result()
    connections.close_all()
    assert sent_while_writing == 0
    assert state_while_writing == State.QUEUED
    assert fresh(render).state == State.DOWNLOADING
    assert render.pk not in poller.tracked
    assert queue.names() == ["download_render"]


def test_a_429_holds_the_polls_of_every_cluster_not_just_the_one_that_got_it(still, owner):
    """Clusters share the gateway: the Retry-After one of them got is read by the others (the shared cache) at
    their next lease check, and they hold their polls too."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.lifecycle.poller import Poller

    mine, theirs = sent(owner, "Polled by the cluster that gets the 429"), sent(owner, "Polled by another")
    still.add_fault("poll", status=429, retry_after=30)
    with GatewayClient() as client, ThreadPoolExecutor(2) as pool, forgotten_pause(client):
        first, second = Poller(client, pool, limit=2), Poller(client, pool, limit=2)
        first.feed()
        first.tracked.pop(theirs.pk)
        first.tracked[mine.pk].due = 0
        first.dispatch()
        first.drain()  # the 429
        second.feed()
        second.tracked.pop(mine.pk)
        second.tracked[theirs.pk].due = 0
        second.adopt_pause()  # its lease check
        second.dispatch()
        held = len(second.running)
    connections.close_all()
    assert len(polls_of(still, mine)) == 1  # the one answered 429
    assert held == 0 and polls_of(still, theirs) == []


def test_a_state_change_whose_row_the_writer_could_not_read_back_is_read_by_the_loop(still, owner):
    """The writer thread's read-back failing (a dropped connection) neither stops the run nor leaves the render
    busy for ever: the loop thread reads the row itself."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.lifecycle.poller import UNREAD, Poller

    render = sent(owner)
    with GatewayClient() as client, ThreadPoolExecutor(1) as pool:
        poller = Poller(client, pool, limit=1)
        poller.feed()
        entry = poller.tracked[render.pk]
        entry.busy = True  # as while its state change was being written
        poller._retrack(entry, UNREAD)  # noqa: SLF001
    fresh_entry = poller.tracked[render.pk]
    assert fresh_entry is not entry and not fresh_entry.busy  # polled again on its cadence


def test_a_state_change_finishing_late_leaves_a_fresher_entry_alone(still, owner):
    """A shard lost and taken again while a render's state change was being written: the feed tracked it afresh
    (and may have a poll of it out); the late answer of the write must not put a second, idle entry beside it."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.lifecycle.poller import Poller

    render = sent(owner)
    with GatewayClient() as client, ThreadPoolExecutor(1) as pool:
        poller = Poller(client, pool, limit=1)
        poller.feed()
        writing = poller.tracked.pop(render.pk)  # lost with its shard while being written
        poller.since = None
        poller.feed()  # taken again: a fresh entry
        fresh_entry = poller.tracked[render.pk]
        fresh_entry.busy = True  # a poll of it is out
        row = Render.objects.filter(pk=render.pk).values(*poller_fields()).first()
        poller._retrack(writing, row)  # noqa: SLF001
    assert poller.tracked[render.pk] is fresh_entry and fresh_entry.busy


def poller_fields():
    from studio.lifecycle.poller import FIELDS

    return FIELDS
