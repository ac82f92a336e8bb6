"""The poller's shards: its work split by render id, each shard leased by one cluster's poller at a time.

Shard K of N holds the renders whose id, read as a 128-bit number, falls in [K * 2**128 / N, (K+1) * 2**128 / N):
a range of primary keys, so "the renders of my shards" is an indexed range condition on both databases (UUIDs
compare as their bytes on PostgreSQL and as lower-case hex on SQLite, the same order).

Leases (`studio.models.Lease`, taken and renewed by conditional update):
- `poller-K`: shard K, held by one poller run;
- `poller@<host>:<pid>`: the one poller run of a cluster (the pid is the cluster's sentinel, every worker's
  parent). It marks the run as live even while it holds no shard, so the others leave it its share.

Every lease check (once a second) a run renews what it holds and reads every poller lease (one query). It takes
free or lapsed shards up to its fair share (N divided by the live runs, rounded up), and when it holds more than
its share while another live run holds less, it gives the surplus back: it stops polling those renders, waits for
their polls in flight, writes their schedule, forgets them and only then releases the lease, so the next holder
starts from a truthful `next_poll_at` and no render is polled by two runs in one interval. A dead run's leases
lapse after `POLLER_LEASE_SECONDS`, and the next lease check of any live run takes them over.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from studio.models import Lease
from studio.queue import POLLER_LEASE

log = logging.getLogger("studio.lifecycle")

SPAN = 1 << 128


def cluster_id() -> str:
    """This process's cluster: its host and its parent's pid (a django-q2 worker's parent is the sentinel)."""
    return f"{socket.gethostname()[:40]}:{os.getppid()}"


def shard_of(pk: uuid.UUID, count: int) -> int:
    return (pk.int * count) >> 128


def _bound(k: int, count: int) -> uuid.UUID:
    return uuid.UUID(int=-(-k * SPAN // count))  # the smallest id of shard k (ceiling division)


def scope(shards: set[int], count: int) -> Q | None:
    """The renders of `shards` as ranges of primary keys (neighbours merged); None means every render."""
    if len(shards) >= count:
        return None
    condition = Q(pk__in=[])
    run: list[int] = []
    for k in [*sorted(shards), None]:
        if k is not None and run and k == run[-1] + 1:
            run.append(k)
            continue
        if run:
            part = Q()
            if run[0] > 0:
                part &= Q(pk__gte=_bound(run[0], count))
            if run[-1] + 1 < count:
                part &= Q(pk__lt=_bound(run[-1] + 1, count))
            condition |= part
        run = [k] if k is not None else []
    return condition


def live_clusters() -> set[str]:
    """The clusters django-q2 reports alive (their status lives 3 s in the broker: Redis, or the cache)."""
    try:
        from django_q.status import Stat

        return {f"{stat.host[:40]}:{stat.sentinel}" for stat in Stat.get_all() if stat.sentinel}
    except Exception:  # noqa: BLE001 - a broker that cannot say is no reason to stop polling
        log.debug("Could not read the clusters' status", exc_info=True)
        return set()


@dataclass
class Change:
    claimed: set[int] = field(default_factory=set)  # new to us: read all their renders
    lost: set[int] = field(
        default_factory=set
    )  # taken by someone else while we stalled: forget, write nothing
    surplus: set[int] = field(default_factory=set)  # to give back (after their polls return)


class Shards:
    """One poller run's view of the shard leases."""

    def __init__(self, count: int, seconds: float, cluster: str | None = None) -> None:
        self.count = count
        self.seconds = seconds
        self.cluster = cluster or cluster_id()
        self.holder = f"{self.cluster}/{uuid.uuid4().hex[:12]}"
        self.run_lease = f"{POLLER_LEASE}@{self.cluster}"
        self.held: set[int] = set()
        self.releasing: set[int] = set()
        self.runs_seen = 1  # live poller runs at the last check, this one included

    def name(self, k: int) -> str:
        return f"{POLLER_LEASE}-{k}"

    def start(self) -> bool:
        """Take this cluster's run lease: False while another run of this cluster holds it."""
        return Lease.acquire(self.run_lease, self.holder, self.seconds)

    def check(self) -> Change | None:
        """Renew, then take or give back shards. None: this run lost its own run lease (it must stop)."""
        if not Lease.acquire(self.run_lease, self.holder, self.seconds):
            return None
        now = timezone.now()
        until = now + timedelta(seconds=self.seconds)
        change = Change()
        if self.held:
            names = [self.name(k) for k in self.held]
            renewed = Lease.objects.filter(name__in=names, holder=self.holder).update(expires_at=until)
            if renewed < len(names):
                still = set(
                    Lease.objects.filter(name__in=names, holder=self.holder).values_list("name", flat=True)
                )
                change.lost = {k for k in self.held if self.name(k) not in still}
                self.held -= change.lost
                self.releasing -= change.lost
                log.warning("The poller lost shards %s to another run", sorted(change.lost))
        rows = Lease.objects.filter(name__startswith=POLLER_LEASE).values_list("name", "holder", "expires_at")
        runs = {self.holder}
        taken: dict[int, str] = {}
        prefix = f"{POLLER_LEASE}-"
        for name, holder, expires_at in rows:
            if not holder or expires_at <= now:
                continue
            if name.startswith(f"{POLLER_LEASE}@"):
                runs.add(holder)
            elif name.startswith(prefix) and name[len(prefix) :].isdigit():
                taken[int(name[len(prefix) :])] = holder
        runs |= set(taken.values())  # a run that holds a shard is live, whatever its run lease says
        self.runs_seen = len(runs)
        share = math.ceil(self.count / len(runs))
        keeping = self.held - self.releasing
        if len(keeping) < share:
            free = [k for k in range(self.count) if k not in taken and k not in self.held]
            change.claimed = self._claim(free[: share - len(keeping)], {name for name, _, _ in rows}, until)
            self.held |= change.claimed
        elif len(keeping) > share:
            counts: dict[str, int] = {}
            for holder in taken.values():
                counts[holder] = counts.get(holder, 0) + 1
            wanting = sum(max(0, share - counts.get(run, 0)) for run in runs if run != self.holder)
            if wanting:
                give = sorted(keeping)[share:][:wanting]  # the highest: what we keep stays one range
                self.releasing |= set(give)
                change.surplus = set(give)
        return change

    def _claim(self, wanted: list[int], existing: set[str], until) -> set[int]:
        """Take the `wanted` shards that are still free or lapsed: one conditional UPDATE (a run that got there
        first keeps its own), then one read of what we got."""
        if not wanted:
            return set()
        names = [self.name(k) for k in wanted]
        now = timezone.now()
        missing = [name for name in names if name not in existing]
        if missing:
            Lease.objects.bulk_create(
                [Lease(name=name, holder="", expires_at=now) for name in missing], ignore_conflicts=True
            )
        Lease.objects.filter(Q(expires_at__lte=now) | Q(holder=""), name__in=names).update(
            holder=self.holder, expires_at=until
        )
        got = Lease.objects.filter(name__in=names, holder=self.holder).values_list("name", flat=True)
        return {int(name.rsplit("-", 1)[1]) for name in got}

    def release(self, shards: set[int]) -> None:
        """Give shards back (their schedule is written): free for any run at its next check."""
        Lease.objects.filter(name__in=[self.name(k) for k in shards], holder=self.holder).update(
            holder="", expires_at=timezone.now()
        )
        self.held -= shards
        self.releasing -= shards

    def close(self) -> None:
        """The run ends: everything it holds is free at once."""
        names = [self.name(k) for k in self.held] + [self.run_lease]
        Lease.objects.filter(name__in=names, holder=self.holder).update(holder="", expires_at=timezone.now())
        self.held.clear()
        self.releasing.clear()

    def clusters_without_a_run(self) -> set[str]:
        """Live clusters (as django-q2 reports them) none of whose runs holds a run lease now."""
        clusters = live_clusters()
        if len(clusters) < 2:
            return set()
        with_run = {
            name.split("@", 1)[1]
            for name in Lease.objects.filter(
                name__startswith=f"{POLLER_LEASE}@", expires_at__gt=timezone.now()
            )
            .exclude(holder="")
            .values_list("name", flat=True)
        }
        return clusters - with_run
