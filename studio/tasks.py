"""django-q2 entry points. They take ids only and are thin: the lifecycle does the work.

Every task is safe to run twice (the ORM broker redelivers unacknowledged tasks; a SIGKILLed worker is never
reported) because every step claims its render with a conditional update.
"""

from __future__ import annotations

import os
import uuid

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from studio import lifecycle
from studio.models import Lease


def enqueue(name: str, *ids) -> None:
    """Queue `studio.tasks.<name>(*ids)` once the current transaction commits (at once outside one)."""
    args = tuple(str(i) for i in ids)
    # robust: a broker that is down (Redis stopped) must not turn a committed render into a 500. The row is
    # the truth; the sweep and the poller find pending work in the database once the broker is back.
    transaction.on_commit(lambda: async_task(f"studio.tasks.{name}", *args), robust=True)


def ensure_poller() -> None:
    """Start the poller unless one holds its lease now."""
    if not Lease.is_held(lifecycle.POLLER_LEASE):
        enqueue("run_poller")


@lifecycle.closing
def submit_render(render_id: str) -> str:
    """Submit one pending render to the gateway."""
    return lifecycle.submit_step(render_id)


@lifecycle.closing
def download_render(render_id: str) -> str:
    """Download one finished render's clip."""
    return lifecycle.download_step(render_id)


@lifecycle.closing
def run_poller() -> dict:
    """Keep every in-flight render on its polling cadence for one run."""
    return lifecycle.run_poller()


@lifecycle.closing
def sweep() -> dict:
    """Once a minute: revive anything stuck, from the database alone."""
    return lifecycle.sweep()


@lifecycle.closing
def revive() -> dict:
    """At cluster start: wait out a dead poller's lease, then poll whatever was in flight."""
    return lifecycle.run_poller(wait_for_lease=lifecycle.POLLER_LEASE_SECONDS + 1)


def on_worker_spawn(**kwargs) -> None:
    """django-q2 post_spawn: the first worker of a (re)started cluster queues one `revive`."""
    # Workers of one cluster share a parent (its sentinel): the first of them to get here wins.
    Lease.objects.filter(name__startswith="cluster-start-", expires_at__lt=timezone.now()).delete()
    if Lease.acquire(f"cluster-start-{os.getppid()}", uuid.uuid4().hex, 60):
        enqueue("revive")
