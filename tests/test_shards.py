"""Sharded polling: every render falls in one shard, runs share the shards fairly, give a surplus back cleanly
and take a dead run's shards over once its leases lapse; two real clusters share one PostgreSQL and one Redis,
one is SIGKILLed mid-run, and every render still finishes once with no render polled twice in one interval.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from studio import cadence
from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.lifecycle import shards
from studio.models import AT_GATEWAY, Lease, Render, State
from studio.queue import shard_lease_names, shards_held
from tests.conftest import Cluster, database_url, wait_for
from tests.fixtures import make_render

COUNT = 8


def held_by(holder_prefix: str) -> set[int]:
    """The shards whose live lease a holder (or every run of a cluster, by its prefix) holds now."""
    rows = Lease.objects.filter(
        name__in=shard_lease_names(), holder__startswith=holder_prefix, expires_at__gt=timezone.now()
    ).values_list("name", flat=True)
    return {int(name.rsplit("-", 1)[1]) for name in rows}


# --- shards as ranges of ids -------------------------------------------------------------------------------


def test_every_render_falls_in_exactly_one_shard_and_its_range_finds_it(db, owner):
    edges = [shards._bound(k, COUNT) for k in range(1, COUNT)]  # noqa: SLF001
    ids = [uuid.uuid4() for _ in range(40)] + edges + [uuid.UUID(int=e.int - 1) for e in edges]
    ids += [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)]
    for pk in ids:
        make_render(owner, state=State.RUNNING, pk=pk)

    found = {
        k: set(Render.objects.filter(shards.scope({k}, COUNT)).values_list("pk", flat=True))
        for k in range(COUNT)
    }

    for k in range(COUNT):
        assert found[k] == {pk for pk in ids if shards.shard_of(pk, COUNT) == k}
    assert sum(len(f) for f in found.values()) == len(ids)  # each in one shard, none left out
    several = {0, 1, 2, 5, 7}  # neighbours merge into one range
    assert set(
        Render.objects.filter(shards.scope(several, COUNT)).values_list("pk", flat=True)
    ) == set().union(*(found[k] for k in several))
    assert shards.scope(set(range(COUNT)), COUNT) is None  # all of them: no condition at all
    assert not Render.objects.filter(shards.scope(set(), COUNT)).exists()


# --- runs share the shards ---------------------------------------------------------------------------------


def test_runs_starting_together_split_the_shards(db):
    a, b = shards.Shards(COUNT, 10, cluster="host-a:1"), shards.Shards(COUNT, 10, cluster="host-b:2")
    assert a.start() and b.start()

    a.check()
    b.check()

    assert len(held_by(a.holder)) == len(held_by(b.holder)) == COUNT // 2


def test_a_lone_run_holds_every_shard(db):
    alone = shards.Shards(COUNT, 10, cluster="host-a:1")
    assert alone.start()

    change = alone.check()

    assert change is not None and change.claimed == set(range(COUNT))
    assert held_by(alone.holder) == set(range(COUNT))
    assert shards_held() == COUNT


def test_a_second_run_of_the_same_cluster_is_refused(db):
    first, second = shards.Shards(COUNT, 10, cluster="host-a:1"), shards.Shards(COUNT, 10, cluster="host-a:1")

    assert first.start()
    assert not second.start()


def test_a_second_cluster_gets_its_share_once_the_first_gives_its_surplus_back(db):
    a, b = shards.Shards(COUNT, 10, cluster="host-a:1"), shards.Shards(COUNT, 10, cluster="host-b:2")
    assert a.start()
    a.check()  # a took them all before b showed up
    assert b.start()

    assert b.check().claimed == set()  # nothing free yet: b waits for a to give back
    change = a.check()
    assert len(change.surplus) == COUNT // 2
    assert held_by(a.holder) == set(
        range(COUNT)
    )  # not released until its polls return and its schedule is written
    a.release(change.surplus)
    assert b.check().claimed == change.surplus

    assert held_by(a.holder) | held_by(b.holder) == set(range(COUNT))
    assert held_by(a.holder).isdisjoint(held_by(b.holder))
    assert len(held_by(a.holder)) == len(held_by(b.holder)) == COUNT // 2
    assert a.check().surplus == set() and b.check().claimed == set()  # settled


def test_a_dead_runs_shards_are_taken_over_once_its_leases_lapse(db):
    a, b = shards.Shards(COUNT, 10, cluster="host-a:1"), shards.Shards(COUNT, 10, cluster="host-b:2")
    a.start()
    a.check()
    b.start()
    b.check()
    a.release(a.check().surplus)
    b.check()
    theirs = held_by(a.holder)

    assert b.check().claimed == set()  # a is alive: b keeps to its share
    # a dies: nobody renews its leases, which lapse
    Lease.objects.filter(holder=a.holder).update(expires_at=timezone.now() - timedelta(seconds=1))
    change = b.check()

    assert change.claimed == theirs
    assert held_by(b.holder) == set(range(COUNT))


def test_a_run_that_lost_a_shard_while_stalled_learns_it_and_forgets_it(db):
    a, b = shards.Shards(COUNT, 10, cluster="host-a:1"), shards.Shards(COUNT, 10, cluster="host-b:2")
    a.start()
    a.check()
    Lease.objects.filter(name=a.name(3)).update(holder=b.holder)  # b took it while a stalled past its lease

    change = a.check()

    assert change.lost == {3}
    assert 3 not in a.held


def test_closing_a_run_frees_everything_it_held(db):
    a = shards.Shards(COUNT, 10, cluster="host-a:1")
    a.start()
    a.check()

    a.close()

    assert shards_held() == 0
    assert (
        not Lease.objects.filter(name=a.run_lease, expires_at__gt=timezone.now()).exclude(holder="").exists()
    )


# --- two real clusters, one killed -------------------------------------------------------------------------

POLL_SCALE = 0.25  # every 0.5 s for the first 22.5 s, then every 1.25 s
SLACK = 2.0  # seconds: the studio's clock for a render starts when the submission's answer arrives
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory):
    """Renders take about half a minute: long enough to kill a cluster while every one is at the gateway."""
    from studio.emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(speed=0.35, fps=8, data_dir=tmp_path_factory.mktemp("slow"))).start()
    yield emu
    emu.stop()


@pytest.fixture
def two_clusters(gateway, slow_emulator, transactional_db, settings, tmp_path):
    """Two `manage.py qcluster` processes (two machines) against one PostgreSQL, one Redis and the emulator."""
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip(
            "several clusters share one PostgreSQL and one Redis: this is the PostgreSQL + Redis run's test"
        )
    settings.BYTESPIKE_BASE_URL = slow_emulator.base_url
    settings.STUDIO_POLLER_SHARDS = COUNT
    data_dir = tmp_path / "clusters"
    data_dir.mkdir()
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "BYTESPIKE_BASE_URL": slow_emulator.base_url,
        "STUDIO_POLL_SCALE": str(POLL_SCALE),
        "STUDIO_POLLER_SHARDS": str(COUNT),
        "STUDIO_Q_WORKERS": "2",
    }
    env.pop("BYTESPIKE_API_KEY", None)
    root = str(Path(__file__).resolve().parent.parent)
    pair = (Cluster(env, root), Cluster(env, root))
    yield pair
    for handle in pair:
        handle.stop()


def clusters_holding() -> dict[int, set[int]]:
    """{process group of the cluster: the shards its run holds}; a run's holder names its sentinel's pid."""
    out: dict[int, set[int]] = {}
    rows = Lease.objects.filter(name__in=shard_lease_names(), expires_at__gt=timezone.now()).exclude(
        holder=""
    )
    for name, holder in rows.values_list("name", "holder"):
        sentinel = int(holder.split("/", 1)[0].rsplit(":", 1)[1])
        try:
            group = os.getpgid(sentinel)
        except ProcessLookupError:
            continue
        out.setdefault(group, set()).add(int(name.rsplit("-", 1)[1]))
    return out


def early_polls(log: dict, task_id: str, killed_at: float) -> list[tuple[float, float, float]]:
    """Consecutive polls of one task closer than the cadence allows (less a small tolerance), other than the pair
    spanning the kill (the dead cluster's last poll and the survivor's first, from the last schedule written)."""
    entry = log[task_id]
    early = []
    for first, second in itertools.pairwise(entry["polls"]):
        if first < killed_at <= second:
            continue
        elapsed = (first - entry["submitted_at"]) / POLL_SCALE
        wanted = min(
            cadence.poll_delay(elapsed, 3600) or 0,
            cadence.poll_delay(max(0.0, elapsed - SLACK / POLL_SCALE), 3600) or 0,
        )
        if second - first < wanted * POLL_SCALE - TOLERANCE:
            early.append((first, second, wanted * POLL_SCALE))
    return early


@pytest.mark.cluster
def test_two_clusters_share_the_shards_and_one_killed_mid_run_loses_nothing(
    two_clusters, slow_emulator, owner
):
    first, second = two_clusters
    before = slow_emulator.submissions
    first.start()
    second.start()
    prompts = [f"Shard run {n}: a kite over a windy beach" for n in range(12)]
    renders = []
    for prompt in prompts:
        form = RenderForm({"model": "sora2", "prompt": prompt, "duration_seconds": "5"})
        assert form.is_valid(), form.errors
        renders.append(do_submit_render(owner, form.order()))
    ids = [r.pk for r in renders]

    def all_at_gateway():
        """every render is at the gateway"""
        return Render.objects.filter(pk__in=ids, state__in=AT_GATEWAY).count() == len(ids)

    def shared():
        """both clusters' pollers hold shards, every shard held"""
        holding = clusters_holding()
        return (
            set(holding) == {first.process.pid, second.process.pid}
            and sum(len(s) for s in holding.values()) == COUNT
            and holding
        )

    wait_for(all_at_gateway, timeout=60)
    split = wait_for(shared, timeout=60)
    assert Render.objects.filter(pk__in=ids, state__in=AT_GATEWAY).count() == len(ids)  # still mid-run
    first.kill(signal.SIGKILL)
    killed_at = slow_emulator.now()  # every poll the killed cluster sent arrived before this

    def taken_over():
        """the surviving cluster holds every shard"""
        return clusters_holding().get(second.process.pid) == set(range(COUNT))

    wait_for(taken_over, timeout=60)

    def finished():
        """every render reached a terminal state"""
        return (
            not Render.objects.filter(pk__in=ids)
            .exclude(
                state__in=[State.COMPLETED, State.FAILED, State.EXPIRED, State.STALLED, State.SUBMIT_UNKNOWN]
            )
            .exists()
        )

    wait_for(finished, timeout=150)

    assert len(split[first.process.pid]) and len(split[second.process.pid])  # they had shared the work
    done = list(Render.objects.filter(pk__in=ids))
    assert {r.state for r in done} == {State.COMPLETED}, [(r.state, r.error) for r in done]
    assert slow_emulator.submissions - before == len(ids)
    by_prompt = {}
    for task_id in slow_emulator.tasks():
        prompt = slow_emulator.task(task_id)["prompt"]
        by_prompt[prompt] = by_prompt.get(prompt, 0) + 1
    assert all(by_prompt.get(p) == 1 for p in prompts)  # one submission each
    log = slow_emulator.poll_log()
    for render in done:
        assert len(log[render.gateway_task_id]["polls"]) >= 3
        assert early_polls(log, render.gateway_task_id, killed_at) == []
