"""Is the studio healthy (for a load balancer's `GET /healthz`), and what the database knows (for `/metrics`).

Three parts, each checked on every probe: the database answers, the broker answers (django-q2's ORM queue or
Redis), and the poller is alive whenever renders wait at the gateway for it. What the worker processes count
(polls, gateway answers, downloads) is in `studio.metrics`; what the database knows is read here, at scrape time,
so it is the same whichever machine is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from studio.models import AT_GATEWAY, Lease, LedgerEntry, LedgerKind, Render, State
from studio.queue import POLLER_LEASE, POLLER_LEASE_SECONDS

# A poller hands over to its successor every run and a fresh render waits a moment for it: only a lease lapsed
# for longer than this, with renders at the gateway longer than this, is a dead poller (the sweep revives one
# within a minute; a load balancer sees it before then).
POLLER_GRACE = timedelta(seconds=2 * POLLER_LEASE_SECONDS)

_broker: Broker | None = None


def broker() -> Broker:
    """django-q2's broker, one per process (a Redis broker keeps its connection pool)."""
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def database_ok() -> bool:
    """The database answers a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def broker_ok() -> bool:
    """The broker answers (raises when it does not)."""
    broker().queue_size()  # a real round trip: the ORM queue's table, or Redis
    return True


def poller_ok() -> bool:
    """Healthy unless renders have waited at the gateway past the grace while no poller lease is live.

    Any lease whose name starts with the poller's counts, so a sharded poller (one lease per shard) is healthy
    while any shard's holder is alive.
    """
    now = timezone.now()
    waiting = Render.objects.filter(state__in=AT_GATEWAY, updated_at__lt=now - POLLER_GRACE).exists()
    if not waiting:
        return True
    return Lease.objects.filter(name__startswith=POLLER_LEASE, expires_at__gt=now - POLLER_GRACE).exists()


CHECKS: dict[str, Callable[[], bool]] = {"database": database_ok, "broker": broker_ok, "poller": poller_ok}


def check() -> dict[str, str]:
    """Each part's state: "ok", or what is wrong with it. The database failing fails the parts that need it."""
    results: dict[str, str] = {}
    for name, probe in CHECKS.items():
        try:
            results[name] = "ok" if probe() else "failing"
        except Exception as error:
            results[name] = f"failing: {type(error).__name__}"
    return results


class DatabaseCollector(Collector):
    """Gauges read from the database when /metrics is scraped: renders by state, money, the queue's depth."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        by_state = dict(Render.objects.values_list("state").annotate(n=Count("pk")).order_by())
        renders = GaugeMetricFamily(
            "studio_renders", "Renders by state (every machine reports the same)", labels=["state"]
        )
        for state in State:
            renders.add_metric([state.value], by_state.get(state.value, 0))
        yield renders

        sums = {
            row["kind"]: (row["total"] or Decimal(0), row["n"])
            for row in LedgerEntry.objects.values("kind")
            .annotate(total=Sum("amount"), n=Count("pk"))
            .order_by()
        }
        # The ledger is append-only, so its totals are counters.
        dollars = CounterMetricFamily(
            "studio_ledger_dollars", "Dollars held, settled and released, ever", labels=["kind"]
        )
        entries = CounterMetricFamily(
            "studio_ledger_entries", "Ledger entries by kind, ever", labels=["kind"]
        )
        for kind in LedgerKind:
            total, count = sums.get(kind.value, (Decimal(0), 0))
            dollars.add_metric([kind.value], float(total))
            entries.add_metric([kind.value], count)
        yield dollars
        yield entries
        held = LedgerEntry.objects.filter(kind=LedgerKind.HOLD).exclude(
            render__ledger__kind__in=[LedgerKind.SETTLE, LedgerKind.RELEASE]
        )
        yield GaugeMetricFamily(
            "studio_held_dollars",
            "Dollars held now by renders not yet settled",
            value=float(held.aggregate(total=Sum("amount"))["total"] or 0),
        )
        yield GaugeMetricFamily(
            "studio_queue_depth", "Tasks waiting in the broker", value=broker().queue_size()
        )
