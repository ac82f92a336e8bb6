"""The poller: one leased loop that keeps every in-flight render on its polling cadence.

One poller at a time holds a database lease (renewed every tick); it polls every due render concurrently from a
thread pool, re-sends due submissions, re-queues due download retries and runs the sweep every few seconds.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from studio import queue
from studio.lifecycle import transitions
from studio.lifecycle.poll import poll_step
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import sweep
from studio.models import AT_GATEWAY, Lease, Render, State
from studio.queue import POLLER_LEASE, POLLER_LEASE_SECONDS

log = logging.getLogger("studio.lifecycle")


def _in_thread(step: Callable, *args) -> str:
    """Run a step in a pool thread with its own database connection, closed afterwards."""
    try:
        return step(*args)
    except Exception:
        log.exception("%s failed for %s", step.__name__, args[0])
        return "error"
    finally:
        connections.close_all()


def due_work(now) -> tuple[list, list, list]:
    """Ids of renders due for a poll, a (re)submission, and a download retry."""
    polls = list(
        Render.objects.filter(state__in=AT_GATEWAY, next_poll_at__lte=now)
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:500]
    )
    submits = list(
        Render.objects.filter(state=State.PENDING)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, created_at__lte=now - timedelta(seconds=10))
        )
        .values_list("pk", flat=True)[:100]
    )
    downloads = list(
        Render.objects.filter(state=State.DOWNLOADING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("pk", flat=True)[:100]
    )
    return polls, submits, downloads


def poller_has_work() -> bool:
    """Whether anything needs the poller: tasks at the gateway, submissions to (re)send, downloads to retry, and
    downloads in progress (its sweep takes one up again the moment its worker dies and its lease lapses)."""
    return Render.objects.filter(
        Q(state__in=[State.PENDING, State.SUBMITTING, *AT_GATEWAY])
        | Q(state=State.DOWNLOADING, next_attempt_at__isnull=False)
        | Q(state=State.DOWNLOADING, lease_until__isnull=False)
    ).exists()


def run_poller(max_seconds: float | None = None, tick: float = 0.2, wait_for_lease: float = 0.0) -> dict:
    """Poll every due render concurrently until nothing is in flight or the run's time is up.

    One poller at a time holds the lease; a second one returns at once. When its time is up with work left it
    hands over to a fresh task, so no single task outlives the cluster's timeout. The once-a-minute sweep
    starts a new one if this one dies.
    """
    holder = uuid.uuid4().hex
    lease_seconds = POLLER_LEASE_SECONDS
    give_up = time.monotonic() + wait_for_lease
    while not Lease.acquire(POLLER_LEASE, holder, lease_seconds):
        if time.monotonic() >= give_up:
            return {"ran": False}
        time.sleep(0.5)
    max_seconds = settings.STUDIO_POLLER_RUN_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + max_seconds
    running: dict = {}
    counts = {"polls": 0, "submits": 0, "downloads": 0}
    next_sweep = 0.0
    client = transitions.client_factory()
    work_left = True
    try:
        with ThreadPoolExecutor(settings.STUDIO_POLLER_THREADS, thread_name_prefix="poller") as pool:
            while time.monotonic() < deadline:
                if not Lease.acquire(POLLER_LEASE, holder, lease_seconds):
                    log.warning("The poller lost its lease; stopping")
                    break
                running = {rid: fut for rid, fut in running.items() if not fut.done()}
                now = timezone.now()
                polls, submits, downloads = due_work(now)
                _dispatch(pool, running, polls, poll_step, client, counts, "polls")
                _dispatch(pool, running, submits, submit_step, client, counts, "submits")
                for rid in downloads:
                    if Render.objects.filter(pk=rid, next_attempt_at__lte=now).update(
                        next_attempt_at=now + timedelta(seconds=60)
                    ):
                        queue.enqueue("download_render", rid)
                        counts["downloads"] += 1
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 5
                    sweep_result = sweep()
                    work_left = sweep_result.get("in_flight", True)
                if not running and not poller_has_work():
                    work_left = False
                    break
                time.sleep(tick)
            else:
                work_left = poller_has_work()
            for future in list(running.values()):
                future.result()
    finally:
        client.close()
        Lease.release(POLLER_LEASE, holder)
    if work_left:
        queue.enqueue("run_poller")
    return {"ran": True, **counts, "work_left": work_left}


def _dispatch(pool, running: dict, ids: list, step, client, counts: dict, key: str) -> None:
    for rid in ids:
        if rid in running:
            continue
        future: Future = pool.submit(_in_thread, step, rid, client)
        running[rid] = future
        counts[key] += 1
