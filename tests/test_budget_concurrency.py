"""Concurrent submits against a nearly spent budget cannot together exceed it.

Eight threads, each with its own database connection, wait at a barrier and submit a $0.50 render at the same
moment against a budget with room for exactly three. Exactly three renders (and three holds, and three queued
submissions) must exist afterwards; the other five are refused with BudgetExceeded, never with a database error.
Runs on SQLite (BEGIN IMMEDIATE + busy timeout) in `make test-sqlite` and on PostgreSQL (row locks on the
budgets) in `make test-scaled`.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connections

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.models import Budget, LedgerEntry, LedgerKind, Render
from studio.money import ledger
from tests.test_money import spent_earlier

THREADS = 8
SORA2 = {"model": "sora2", "duration_seconds": "5", "size": "1280x720"}  # $0.50 on the card


def submit_all_at_once(users) -> list:
    """Each user submits one render from their own thread, all released by one barrier; results in order."""
    barrier = threading.Barrier(len(users))
    results: list = [None] * len(users)

    def run(index: int, user) -> None:
        try:
            form = RenderForm({**SORA2, "prompt": f"Concurrent apple {index}"})
            assert form.is_valid(), form.errors
            barrier.wait(timeout=10)
            results[index] = do_submit_render(user, form.order())
        except Exception as error:  # noqa: BLE001 - every outcome is asserted by the test
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, user)) for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a submit never returned"
    return results


@pytest.mark.parametrize("scope", ["team", "member"])
def test_concurrent_submits_cannot_together_exceed_a_nearly_spent_budget(queue, owner, teammate, team, scope):
    # Why this matters on PostgreSQL: there the eight transactions really run side by side, and only the row
    # lock `ledger.hold` takes on the budgets (SELECT ... FOR UPDATE) makes each one read what the others held.
    # Without it several read "$1.50 left" at once and more than three are accepted. SQLite lets one writer in
    # at a time (BEGIN IMMEDIATE), so there this passes with or without the lock: only the PostgreSQL + Redis
    # pass of `make test` (and of CI) catches a lost lock, which is why that pass must stay.
    if scope == "team":
        limited = Budget.objects.create(team=team, monthly_usd=Decimal("10.00"))
        users = [owner, teammate] * (THREADS // 2)  # both count against the team's budget
    else:
        Budget.objects.create(team=team, monthly_usd=Decimal("1000.00"))
        limited = Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("10.00"))
        users = [owner] * THREADS
    spent_earlier(team, owner, "8.50")  # $1.50 left: room for exactly three $0.50 renders

    results = submit_all_at_once(users)

    made = [r for r in results if isinstance(r, Render)]
    refused = [r for r in results if isinstance(r, ledger.BudgetExceeded)]
    assert [r for r in results if r not in made and r not in refused] == []  # no database error escaped
    assert len(made) == 3
    assert len(refused) == THREADS - 3
    assert all("only $0.00 is left" in error.message for error in refused)
    burst = Render.objects.filter(prompt__startswith="Concurrent apple")
    assert sorted(burst.values_list("pk", flat=True)) == sorted(r.pk for r in made)
    holds = LedgerEntry.objects.filter(render__in=burst, kind=LedgerKind.HOLD)
    assert sorted(holds.values_list("amount", flat=True)) == [Decimal("0.50")] * 3
    status = ledger.budget_status(limited)
    assert (status.used, status.held, status.left) == (Decimal("8.50"), Decimal("1.50"), Decimal("0"))
    assert queue.names() == ["submit_render"] * 3  # only accepted renders are ever sent
