"""django-q2 entry points. They take ids only and are thin: the lifecycle does the work.

Every task is safe to run twice (the ORM broker redelivers unacknowledged tasks; a SIGKILLed worker is never
reported) because every step claims its render with a conditional update. `studio.queue` queues them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable

from django.db import close_old_connections
from django.utils import timezone

from studio.lifecycle import download, poller, submit
from studio.lifecycle import sweep as sweeping
from studio.models import Lease
from studio.queue import POLLER_LEASE_SECONDS, enqueue


def closing(func: Callable) -> Callable:
    """Close stale database connections around a task, as Django does around a request."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


@closing
def submit_render(render_id: str) -> str:
    """Submit one pending render to the gateway."""
    return submit.submit_step(render_id)


@closing
def download_render(render_id: str) -> str:
    """Download one finished render's clip."""
    return download.download_step(render_id)


@closing
def run_poller() -> dict:
    """Keep every in-flight render on its polling cadence for one run."""
    return poller.run_poller()


@closing
def sweep() -> dict:
    """Once a minute: revive anything stuck, from the database alone."""
    return sweeping.sweep()


@closing
def revive() -> dict:
    """At cluster start: wait out a dead poller's lease, then poll whatever was in flight."""
    return poller.run_poller(wait_for_lease=POLLER_LEASE_SECONDS + 1)


def on_worker_spawn(**kwargs) -> None:
    """django-q2 post_spawn: the first worker of a (re)started cluster queues one `revive`."""
    # Workers of one cluster share a parent (its sentinel): the first of them to get here wins.
    Lease.objects.filter(name__startswith="cluster-start-", expires_at__lt=timezone.now()).delete()
    if Lease.acquire(f"cluster-start-{os.getppid()}", uuid.uuid4().hex, 60):
        enqueue("revive")
