"""What the worker processes count, for `GET /metrics`: polls and their lateness, gateway answers, downloads.

These events happen in the django-q2 cluster's worker processes, not in the web server that answers /metrics,
so they are counted with prometheus_client's multiprocess mode: every process writes its own counters to a
memory-mapped file in one directory per machine (`STUDIO_DATA_DIR/metrics`, made and named by
`studio.bootstrap.prepare_data_dir()` through PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client),
and the web process sums the files of every process, live or dead, when it is scraped. A counter of a process
that exited keeps counting toward the total, so the totals only go up until the directory is cleared (which
`manage.py serve` does when it starts the whole stack: Prometheus reads that as a counter reset).

Across machines each machine counts its own events: Prometheus scrapes every machine's web server (README
"Deploying"). What the database knows (renders by state, money held and settled, the queue's depth) is read at
scrape time by `studio.health` and is the same whichever machine answers.

Each hook is one call from the code it watches and never raises: a metric must never break a poll or a download.
"""

from __future__ import annotations

import logging
import os

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("studio.metrics")

POLLS = Counter("studio_polls", "Polls sent to the gateway by the poller")
POLL_LATENESS = Histogram(
    "studio_poll_lateness_seconds",
    "How long after its due time the poller sent each poll",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
GATEWAY_RESPONSES = Counter(
    "studio_gateway_responses", "Answers from the gateway's API, by HTTP status code", ["code"]
)
DOWNLOADS = Counter("studio_downloads", "Download attempts of finished clips, by outcome", ["outcome"])
DOWNLOAD_BYTES = Counter("studio_download_bytes", "Bytes of clips received from the gateway's result hosts")


def _safely(hook):
    def guarded(*args):
        try:
            return hook(*args)
        except Exception:  # a full disk under the metrics directory, say: the work goes on uncounted
            log.warning("Counting %s failed", hook.__name__, exc_info=True)
            return args[-1] if args else None

    guarded.__name__ = hook.__name__
    guarded.__doc__ = hook.__doc__
    return guarded


@_safely
def poll_sent(lateness: float) -> None:
    """A poll went out `lateness` seconds after it was due (the poller's dispatch)."""
    POLLS.inc()
    POLL_LATENESS.observe(max(0.0, lateness))


@_safely
def gateway_response(response: httpx.Response) -> None:
    """An answer from the gateway's API (an httpx response hook on the API client)."""
    GATEWAY_RESPONSES.labels(code=str(response.status_code)).inc()


@_safely
def download_bytes(count: int) -> None:
    """Bytes of a clip arrived."""
    DOWNLOAD_BYTES.inc(count)


@_safely
def download_finished(outcome: str) -> str:
    """A download attempt ended with `outcome` ("completed", "continued", "retry", ...); returns it."""
    DOWNLOADS.labels(outcome=outcome).inc()
    return outcome


def multiprocess_dir() -> str:
    """The directory every process of this machine writes its counters to."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition(*collectors) -> bytes:
    """The text format of every process's counters on this machine, plus `collectors` (read at call time)."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:  # a process that did not run bootstrap (a one-off script): its own counters only
        for metric in (POLLS, POLL_LATENESS, GATEWAY_RESPONSES, DOWNLOADS, DOWNLOAD_BYTES):
            registry.register(metric)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
