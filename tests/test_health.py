"""`/healthz` for load balancers and `/metrics` for Prometheus (issue 11): what they answer, and to whom."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from studio import health
from studio.models import Lease, Render, State
from studio.queue import POLLER_LEASE
from tests.fixtures import make_render, submit_render

FORM = {"model": "sora2", "prompt": "A red apple rolls", "duration_seconds": "5", "size": "1280x720"}
OUTSIDE = "203.0.113.9"  # a documentation address: not loopback
TOKEN = "scrape-me-please-1234"  # noqa: S105 - a test token


def scrape(client: Client | None = None, **extra) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def lapsed_poller():
    """A poller that died half a minute ago: its lease row is there, lapsed."""
    Lease.objects.update_or_create(
        name=POLLER_LEASE, defaults={"holder": "dead", "expires_at": timezone.now() - timedelta(seconds=30)}
    )


# --- /healthz -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_200_with_every_part_named_when_all_is_well(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "poller": "ok"}}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_needs_no_login_and_refuses_a_post(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_renders_at_the_gateway_with_no_live_poller_answer_503_naming_the_poller(
    client, owner, lapsed_poller
):
    render = make_render(owner, State.RUNNING, gateway_task_id="task-1")
    Render.objects.filter(pk=render.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "checks": {"database": "ok", "broker": "ok", "poller": "failing"},
    }


@pytest.mark.django_db
def test_a_live_poller_lease_is_healthy_with_renders_in_flight(client, owner):
    render = make_render(owner, State.RUNNING, gateway_task_id="task-1")
    Render.objects.filter(pk=render.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    assert Lease.acquire(POLLER_LEASE, "alive", 10)
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_a_lapsed_lease_is_healthy_when_nothing_waits_at_the_gateway(client, owner, lapsed_poller):
    make_render(owner, State.COMPLETED)
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_a_render_that_just_reached_the_gateway_gives_the_poller_time_to_start(client, owner, lapsed_poller):
    make_render(owner, State.QUEUED, gateway_task_id="task-1")  # updated now: the poller is on its way
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_a_broker_that_does_not_answer_gives_503_naming_the_broker(client, monkeypatch):
    """A Redis broker whose server is gone (a port nothing listens on): a real refused connection."""
    from django_q.brokers.redis_broker import Redis

    gone = Redis.__new__(Redis)
    gone.list_key = "studio-health-test"
    gone.connection = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(health, "_broker", gone)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "failing: ConnectionError",
        "poller": "ok",
    }


# --- /metrics: who may read it --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_served_to_loopback():
    samples = scrape()
    assert ("studio_renders", (("state", "completed"),)) in samples
    assert ("studio_queue_depth", ()) in samples


@pytest.mark.django_db
def test_metrics_are_a_404_from_elsewhere_without_a_token(settings):
    settings.STUDIO_METRICS_TOKEN = TOKEN
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics").status_code == 404
    wrong = {"HTTP_AUTHORIZATION": "Bearer not-the-token"}
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **wrong).status_code == 404


@pytest.mark.django_db
def test_metrics_are_served_anywhere_with_the_bearer_token(settings):
    settings.STUDIO_METRICS_TOKEN = TOKEN
    samples = scrape(Client(REMOTE_ADDR=OUTSIDE), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ("studio_renders", (("state", "pending"),)) in samples


@pytest.mark.django_db
def test_without_a_configured_token_no_bearer_opens_the_metrics(settings):
    settings.STUDIO_METRICS_TOKEN = ""
    anything = {"HTTP_AUTHORIZATION": "Bearer "}
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", **anything).status_code == 404


@pytest.mark.django_db
def test_a_request_a_proxy_forwarded_is_not_loopback_even_from_a_proxy_on_this_machine():
    forwarded = {"HTTP_X_FORWARDED_FOR": OUTSIDE}
    assert Client().get("/metrics", **forwarded).status_code == 404


# --- /metrics: what it counts ---------------------------------------------------------------------------------


def test_a_real_render_through_the_emulator_moves_the_metrics(gateway, queue, owner):
    before = scrape()
    render = submit_render(owner, FORM)
    queue.run()
    render.refresh_from_db()
    assert render.state == State.COMPLETED, render.error
    after = scrape()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("studio_polls_total") >= 1
    assert grew("studio_poll_lateness_seconds_count") == grew("studio_polls_total")
    assert grew("studio_gateway_responses_total", code="200") >= 2  # the submission and at least one poll
    assert grew("studio_downloads_total", outcome="completed") == 1
    assert grew("studio_download_bytes_total") == render.video_bytes
    assert grew("studio_renders", state="completed") == 1
    assert grew("studio_ledger_dollars_total", kind="hold") == pytest.approx(float(render.estimated_cost))
    assert grew("studio_ledger_dollars_total", kind="settle") == pytest.approx(float(render.billed_cost))
    assert value(after, "studio_held_dollars") == 0
