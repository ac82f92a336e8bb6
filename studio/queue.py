"""How work reaches the worker cluster: tasks queued on commit, and the one poller's lease.

Queue messages are hints; the render row is the truth. This module sits just above the records, so the lifecycle
and the actions can queue work without importing the task entry points (`studio.tasks`), which import them.
"""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task

from studio.models import Lease

POLLER_LEASE = "poller"
POLLER_LEASE_SECONDS = 10.0  # renewed every tick; a dead poller's lease lapses this fast


def enqueue(name: str, *ids) -> None:
    """Queue `studio.tasks.<name>(*ids)` once the current transaction commits (at once outside one)."""
    args = tuple(str(i) for i in ids)
    # robust: a broker that is down (Redis stopped) must not turn a committed render into a 500. The row is
    # the truth; the sweep and the poller find pending work in the database once the broker is back.
    transaction.on_commit(lambda: async_task(f"studio.tasks.{name}", *args), robust=True)


def ensure_poller() -> None:
    """Start the poller unless one holds its lease now."""
    if not Lease.is_held(POLLER_LEASE):
        enqueue("run_poller")
