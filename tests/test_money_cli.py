"""Money from the command line: rates, budgets, spend, reconciliation and the ledger export."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from studio.lifecycle.transitions import advance
from studio.models import Budget, LedgerEntry, Rate, Render, State
from studio.money import ledger


def run(*args) -> str:
    out = io.StringIO()
    call_command("money", *args, stdout=out)
    return out.getvalue()


def billed_render(owner, team, estimate: str, billed: str) -> Render:
    with transaction.atomic():
        render = Render.objects.create(
            user=owner,
            team=team,
            model="sora2",
            prompt="A kite",
            params={"duration_seconds": 5, "size": "1280x720"},
            estimated_cost=Decimal(estimate),
            rate_per_second=Decimal("0.1"),
            state=State.RUNNING,
        )
        ledger.hold(render)
    advance(
        render.pk, State.RUNNING, State.COMPLETED, billed_cost=Decimal(billed), billed_credits=Decimal(billed)
    )
    return render


@pytest.mark.django_db(transaction=True)
def test_budget_spend_reconcile_and_ledger_from_the_command_line(owner, team):
    assert "team Acme: $2.00 a month" in run("budget", "acme", "2")
    assert "olivia: $1.00 a month" in run("budget", "acme", "1", "--user", "olivia")
    render = billed_render(owner, team, "0.50", "0.60")

    spend = json.loads(run("spend", "acme", "--json"))
    assert spend["spent"] == "0.6000"
    assert {b["scope"]: b["left"] for b in spend["budgets"]} == {
        "team Acme's": "1.4000",
        "olivia's": "0.4000",
    }

    differing = json.loads(run("reconcile", "acme", "--json", "--tolerance", "5"))
    assert [row["id"] for row in differing["beyond_tolerance"]] == [str(render.pk)]

    rows = list(csv.reader(io.StringIO(run("ledger", "acme"))))
    assert [(row[1], row[2]) for row in rows[1:]] == [("hold", "0.5000"), ("settle", "0.6000")]

    assert "no budget" in run("budget", "acme", "none", "--user", "olivia")
    assert Budget.objects.filter(team=team).count() == 1
    assert LedgerEntry.objects.count() == 2


@pytest.mark.django_db
def test_setting_a_rate_marks_it_as_an_admins_and_the_estimate_follows():
    out = run("rates", "--set", "sora-2-pro", "1080p", "0.25")
    assert "$0.25/s" in out and "Set by an admin" in out
    assert Rate.objects.get(model="sora-2-pro", rate_key="1080p").usd_per_second == Decimal("0.25")
    assert ledger.quote("sora-2-pro", {"duration_seconds": 8, "resolution": "1080p"}).total == Decimal(
        "2.0000"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ("budget", "nope", "5"),
        ("budget", "acme", "-5"),
        ("budget", "acme", "five"),
        ("budget", "acme", "5", "--user", "stranger"),
        ("spend", "acme", "--month", "2026-13"),
        ("reconcile", "acme", "--tolerance", "lots"),
        ("rates", "--set", "sora2", "4k", "0.1"),
        ("rates", "--set", "sora2", "any", "0"),
    ],
)
def test_bad_input_is_a_clear_error_never_a_traceback(args, team):
    with pytest.raises(CommandError):
        run(*args)
