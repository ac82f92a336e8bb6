"""How work reaches the worker cluster: tasks queued on commit, and the poller's leases.

Queue messages are hints; the render row is the truth. This module sits just above the records, so the lifecycle
and the actions can queue work without importing the task entry points (`studio.tasks`), which import them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from studio.models import Lease

POLLER_LEASE = "poller"  # shard K is leased as "poller-K", a cluster's one poller run as "poller@<cluster>"
POLLER_LEASE_SECONDS = 10.0  # renewed every tick; a dead poller's lease lapses this fast


def shard_lease_names() -> list[str]:
    """The lease of every shard of the poller's work (STUDIO_POLLER_SHARDS of them)."""
    return [f"{POLLER_LEASE}-{k}" for k in range(settings.STUDIO_POLLER_SHARDS)]


def shards_held() -> int:
    """How many shards a live poller holds now."""
    return (
        Lease.objects.filter(name__in=shard_lease_names(), expires_at__gt=timezone.now())
        .exclude(holder="")
        .count()
    )


def enqueue(name: str, *ids) -> None:
    """Queue `studio.tasks.<name>(*ids)` once the current transaction commits (at once outside one)."""
    args = tuple(str(i) for i in ids)
    # robust: a broker that is down (Redis stopped) must not turn a committed render into a 500. The row is
    # the truth; the sweep and the poller find pending work in the database once the broker is back.
    transaction.on_commit(lambda: async_task(f"studio.tasks.{name}", *args), robust=True)


def ensure_poller() -> None:
    """Start a poller unless live pollers hold every shard now."""
    if shards_held() < settings.STUDIO_POLLER_SHARDS:
        enqueue("run_poller")
