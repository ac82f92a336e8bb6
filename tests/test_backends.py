"""Each pass of `make test` runs on the backends it claims: SQLite + ORM broker, or PostgreSQL + Redis."""

from __future__ import annotations

from django.db import connection
from django_q.brokers import get_broker

from tests.conftest import SCALED_OUT


def test_the_suite_runs_on_the_database_of_its_pass(db):
    assert connection.vendor == ("postgresql" if SCALED_OUT else "sqlite")


def test_sqlite_runs_in_wal_mode_with_immediate_transactions(db):
    if connection.vendor != "sqlite":
        assert connection.settings_dict["ENGINE"].endswith("postgresql")
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0].lower() == "wal"
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_tasks_travel_through_the_broker_of_its_pass(queue):
    from studio.queue import enqueue

    broker = get_broker()
    assert type(broker).__name__ == ("Redis" if SCALED_OUT else "ORM")
    enqueue("sweep")
    assert broker.queue_size() == 1
    assert queue.names() == ["sweep"]
    assert broker.queue_size() == 0


def test_a_broker_that_is_down_does_not_lose_a_submitted_render(owner_client, monkeypatch, transactional_db):
    from studio.models import Render, State
    from tests.conftest import HTMX

    def broker_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("studio.queue.async_task", broker_down)
    response = owner_client.post(
        "/renders/", {"model": "sora2", "prompt": "A kite over a beach", "duration_seconds": "5"}, **HTMX
    )
    assert response.status_code == 200
    render = Render.objects.get()
    assert render.state == State.PENDING  # the poller's due-work query re-sends pending renders it finds
