"""Each pass of `make test` runs on the backends it claims: SQLite + ORM broker, or PostgreSQL + Redis."""

from __future__ import annotations

from django.db import connection, transaction
from django_q.brokers import get_broker

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.models import Render
from studio.queue import enqueue
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
    broker = get_broker()
    assert type(broker).__name__ == ("Redis" if SCALED_OUT else "ORM")
    enqueue("sweep")
    assert broker.queue_size() == 1
    assert queue.names() == ["sweep"]
    assert broker.queue_size() == 0


# A task sent before its transaction commits can be picked up by a worker that then finds no row (or an old
# one), and a rolled-back render would be submitted all the same. On the ORM broker the queue row shares the
# transaction, so only "nothing before the commit" shows the mistake; on Redis both tests do.


def test_a_task_enqueued_in_a_transaction_reaches_the_broker_only_when_it_commits(queue):
    broker = get_broker()
    with transaction.atomic():
        enqueue("sweep")
        assert broker.queue_size() == 0
    assert broker.queue_size() == 1
    assert queue.names() == ["sweep"]


def test_a_task_enqueued_in_a_transaction_that_rolls_back_is_never_sent(queue):
    broker = get_broker()
    with transaction.atomic():
        enqueue("sweep")
        transaction.set_rollback(True)
    assert broker.queue_size() == 0
    assert queue.names() == []


def test_a_render_whose_transaction_rolls_back_is_never_submitted(owner, queue):
    form = RenderForm({"model": "sora2", "prompt": "A kite over a beach", "duration_seconds": "5"})
    assert form.is_valid(), form.errors
    broker = get_broker()
    with transaction.atomic():
        do_submit_render(owner, form.order())
        assert broker.queue_size() == 0
        transaction.set_rollback(True)
    assert not Render.objects.exists()
    assert broker.queue_size() == 0
    assert queue.names() == []


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
