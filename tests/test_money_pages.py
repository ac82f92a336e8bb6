"""The money pages: spend (chart, tables, budget bars), the ledger CSV, budgets, the rate card, reconciliation.

People: Ada (admin of Acme), Olivia (owner, a member), Tom (teammate, member), Oscar (outsider), Sam (staff,
in no team). Decisions pinned here:
- Any member sees the team's totals, spend per day, per model and per tag; admins also see every member's line and
  budget, other members only their own (and the team's budget). The CSV follows: all entries for admins, one's
  own for other members.
- Budgets and reconciliation are for team admins (403 for members); a team one is not in is a 404; anonymous
  visitors go to the login page; a bad team, month or tolerance in the query string is a 400.
- Spend is what the ledger settled; held is what renders of the month still hold. Budget bars are the current
  month's and agree with `ledger.budget_status`, the figures the budget check itself uses.
- Tags on someone else's private render are not shown: its spend counts as "No tag".
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import HTMX
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from studio.lifecycle.transitions import advance
from studio.models import (
    Budget,
    LedgerEntry,
    LedgerKind,
    Rate,
    RateSource,
    Render,
    Role,
    State,
    Tag,
    Team,
)
from studio.money import ledger, reports
from studio.money.chart import PLOT_BOTTOM, PLOT_TOP, day_chart
from studio.money.params import Month, parse_month
from tests.fixtures import client_for, join, make_render

# --- people, renders and the ledger ----------------------------------------------------------------------------


@pytest.fixture
def staff(make_user):
    return make_user("sam", is_staff=True)


def month_day(day: int, hour: int = 12):
    """A moment in the current month (UTC): budgets and the default spend page are this month's."""
    return ledger.month_start() + timedelta(days=day - 1, hours=hour)


def entry(render: Render, kind: str, amount, at, note: str = "") -> LedgerEntry:
    return LedgerEntry.objects.create(
        render=render,
        kind=kind,
        amount=Decimal(str(amount)),
        team=render.team,
        user=render.user,
        model=render.model,
        note=note,
        created_at=at,
    )


def billed(user, team, amount, at, *, estimate=None, model="sora2", tags=(), **fields) -> Render:
    """A finished render: its estimate held and its bill settled at `at`, with tags."""
    estimate = estimate if estimate is not None else amount
    render = make_render(
        user,
        team=team,
        model=model,
        estimated_cost=Decimal(str(estimate)),
        billed_cost=Decimal(str(amount)),
        **fields,
    )
    entry(render, LedgerKind.HOLD, estimate, at)
    entry(render, LedgerKind.SETTLE, amount, at)
    for name in tags:
        Tag.objects.create(render=render, name=name)
    return render


def holding(user, team, amount, at, *, state=State.RUNNING, **fields) -> Render:
    """A render whose estimate is held and that has not settled."""
    render = make_render(user, state, team=team, estimated_cost=Decimal(str(amount)), **fields)
    entry(render, LedgerKind.HOLD, amount, at)
    return render


@pytest.fixture
def month_of_spend(owner, admin, teammate, team) -> dict:
    """Acme this month: Olivia $1.50 on day 1 and $0.40 on day 2, Tom $2.00 (Pro) on day 2, Olivia $0.80 held."""
    renders = {
        "olivia_1": billed(owner, team, "1.50", month_day(1), tags=["launch", "q3"]),
        "olivia_2": billed(owner, team, "0.40", month_day(2), tags=["launch"]),
        "tom_pro": billed(teammate, team, "2.00", month_day(2), model="sora-2-pro", tags=["teaser"]),
        "olivia_running": holding(owner, team, "0.80", month_day(2)),
        "released": make_render(teammate, State.FAILED, team=team, billed_cost=Decimal(0)),
    }
    entry(renders["released"], LedgerKind.HOLD, "0.50", month_day(1))
    entry(renders["released"], LedgerKind.RELEASE, "0", month_day(1))
    # Last month's bill is not this month's spend.
    billed(owner, team, "9.00", ledger.month_start() - timedelta(days=3))
    return renders


def spend_url(**query) -> str:
    return reverse("spend") + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def html_of(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def cell_row(html: str, table_id: str, attr: str, value: str) -> list[str]:
    """The cells of the row whose data attribute matches, in a table, as text."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S).group(0)
    row = re.search(rf'<tr[^>]*data-{attr}="{re.escape(value)}"[^>]*>(.*?)</tr>', table, re.S)
    assert row, f"no row {attr}={value!r} in #{table_id}"
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    ]


def rows_of(html: str, table_id: str, attr: str) -> list[str]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    return re.findall(rf'<tr[^>]*data-{attr}="([^"]*)"', table.group(0)) if table else []


def shown(html: str, name: str, within: str | None = None) -> str:
    if within:
        html = re.search(rf'data-budget="{re.escape(within)}".*?</dl>', html, re.S).group(0)
    return re.search(rf'data-testid="{name}">([^<]*)<', html).group(1)


# --- the spend page --------------------------------------------------------------------------------------------


def test_spend_page_totals_are_this_months_bills_and_holds(admin, month_of_spend):
    html = html_of(client_for(admin).get(reverse("spend")))
    assert (
        shown(html, "spent") == "$3.90"
    )  # 1.50 + 0.40 + 2.00; last month's 9.00 and the release are not spend
    assert shown(html, "held") == "$0.80"


def test_spend_per_day_per_user_per_model_and_per_tag(admin, month_of_spend):
    html = html_of(client_for(admin).get(reverse("spend")))
    day1, day2 = month_day(1).date().isoformat(), month_day(2).date().isoformat()
    bars = dict(re.findall(r'data-day="([\d-]+)"[^>]*><title>[^<]*: (\$[\d.]+)</title>', html))
    assert bars[day1] == "$1.50"
    assert bars[day2] == "$2.40"
    assert set(amount for day, amount in bars.items() if day not in (day1, day2)) == {"$0.00"}

    assert cell_row(html, "per-user", "user", "olivia") == ["olivia", "2", "$1.90", "$0.80"]
    assert cell_row(html, "per-user", "user", "tom") == ["tom", "1", "$2.00", "$0.00"]
    assert cell_row(html, "per-user", "user", "ada") == [
        "ada",
        "0",
        "$0.00",
        "$0.00",
    ]  # admins see every member

    assert cell_row(html, "per-model", "model", "sora2") == ["Sora 2 (draft)", "2", "$1.90"]
    assert cell_row(html, "per-model", "model", "sora-2-pro") == ["Sora 2 Pro", "1", "$2.00"]

    assert cell_row(html, "per-tag", "tag", "launch") == ["launch", "2", "$1.90"]
    assert cell_row(html, "per-tag", "tag", "q3") == ["q3", "1", "$1.50"]
    assert cell_row(html, "per-tag", "tag", "teaser") == ["teaser", "1", "$2.00"]
    assert rows_of(html, "per-tag", "tag") == ["teaser", "launch", "q3"]  # the most spent first


def test_untagged_spend_has_its_own_line_and_private_tags_stay_private(owner, admin, teammate, team):
    billed(owner, team, "1.00", month_day(1))
    billed(teammate, team, "0.70", month_day(1), tags=["secret-project"], private=True)
    html = html_of(client_for(admin).get(reverse("spend")))
    assert "secret-project" not in html  # only Tom may see his private render
    assert cell_row(html, "per-tag", "tag", "") == ["No tag", "2", "$1.70"]
    tom_view = html_of(client_for(teammate).get(reverse("spend")))
    assert cell_row(tom_view, "per-tag", "tag", "secret-project") == ["secret-project", "1", "$0.70"]
    assert cell_row(tom_view, "per-tag", "tag", "") == ["No tag", "1", "$1.00"]


def test_a_member_sees_team_totals_and_only_their_own_line(owner, month_of_spend):
    html = html_of(client_for(owner).get(reverse("spend")))
    assert shown(html, "spent") == "$3.90"
    assert shown(html, "my-spent") == "$1.90"
    assert rows_of(html, "per-user", "user") == ["olivia"]
    assert cell_row(html, "per-model", "model", "sora-2-pro") == ["Sora 2 Pro", "1", "$2.00"]
    assert reverse("budgets") not in html and reverse("reconcile") not in html  # admin pages are not offered


def test_spend_of_a_past_month(admin, team, month_of_spend):
    last = Month.current().previous
    html = html_of(client_for(admin).get(spend_url(team=team.pk, month=last.param)))
    assert shown(html, "spent") == "$9.00"
    assert last.label in html
    assert "their bars show the current month" in html


def test_a_hold_made_at_submit_is_held_until_the_render_settles_at_its_bill(
    owner, admin, team, django_capture_on_commit_callbacks
):
    Budget.objects.create(team=team, monthly_usd=Decimal("10"))
    with transaction.atomic():
        render = make_render(owner, State.RUNNING, team=team)
        ledger.hold(render)
    html = html_of(client_for(admin).get(reverse("spend")))
    assert (shown(html, "spent"), shown(html, "held")) == ("$0.00", "$0.50")
    assert shown(html, "left", within="team") == "$9.50"

    with django_capture_on_commit_callbacks(execute=True):
        assert advance(render.pk, State.RUNNING, State.COMPLETED, billed_cost=Decimal("0.48"))
    html = html_of(client_for(admin).get(reverse("spend")))
    assert (shown(html, "spent"), shown(html, "held")) == ("$0.48", "$0.00")
    assert cell_row(html, "per-user", "user", "olivia") == ["olivia", "1", "$0.48", "$0.00"]
    assert shown(html, "left", within="team") == "$9.52"


def test_budget_bars_show_used_held_and_left_as_the_budget_check_does(
    owner, admin, teammate, team, month_of_spend
):
    team_budget = Budget.objects.create(team=team, monthly_usd=Decimal("10"))
    olivia_budget = Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("2.50"))
    Budget.objects.create(team=team, user=teammate, monthly_usd=Decimal("1.00"))  # Tom is over
    html = html_of(client_for(admin).get(reverse("spend")))

    assert [shown(html, k, within="team") for k in ("used", "held", "left")] == ["$3.90", "$0.80", "$5.30"]
    olivia = re.search(r'data-budget="olivia".*?</dl>', html, re.S).group(0)
    assert "Over by" in olivia and shown(olivia, "left") == "$0.20"  # 2.50 - 1.90 - 0.80
    tom = re.search(r'data-budget="tom".*?</dl>', html, re.S).group(0)
    assert shown(tom, "used") == "$2.00" and shown(tom, "left") == "$1.00"
    for budget in (team_budget, olivia_budget):
        status = ledger.budget_status(budget)
        bar_html = re.search(
            rf'data-budget="{"team" if budget.user is None else "olivia"}".*?</dl>', html, re.S
        ).group(0)
        assert shown(bar_html, "used") == f"${status.used:.2f}"
        assert shown(bar_html, "held") == f"${status.held:.2f}"
    # The bar itself: used and held as widths out of 100, held drawn after used.
    assert re.search(r'<rect class="used" x="0" y="0" width="39.00"', html)
    assert re.search(r'<rect class="held" x="39.00" y="0" width="8.00"', html)
    assert 'aria-label="team Acme&#x27;s budget: $3.90 used, $0.80 held, $5.30 left of $10.00"' in html


def test_a_hold_from_last_month_counts_while_its_render_is_in_flight(owner, admin, team):
    budget = Budget.objects.create(team=team, monthly_usd=Decimal("10"))
    last_month = ledger.month_start() - timedelta(hours=1)
    holding(owner, team, "1.20", last_month)  # still running: it will settle this month
    holding(owner, team, "0.70", last_month, state=State.STALLED)  # ended last month: last month's worry
    html = html_of(client_for(admin).get(reverse("spend")))
    assert shown(html, "held") == "$1.20"
    assert shown(html, "held", within="team") == f"${ledger.budget_status(budget).held:.2f}" == "$1.20"
    assert shown(html_of(client_for(admin).get(reverse("budgets"))), "held", within="team") == "$1.20"


def test_a_member_sees_the_team_budget_and_their_own_only(owner, teammate, team, month_of_spend):
    Budget.objects.create(team=team, monthly_usd=Decimal("10"))
    Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("5"))
    Budget.objects.create(team=team, user=teammate, monthly_usd=Decimal("3"))
    html = html_of(client_for(owner).get(reverse("spend")))
    assert re.findall(r'data-budget="([^"]+)"', html) == ["team", "olivia"]


def test_the_chart_is_server_drawn_svg_with_one_labelled_bar_per_day(admin, team, month_of_spend):
    for month, days in (("2026-02", 28), ("2028-02", 29), ("2026-07", 31)):
        html = html_of(client_for(admin).get(spend_url(team=team.pk, month=month)))
        svg = re.search(r'<svg id="spend-chart".*?</svg>', html, re.S).group(0)
        assert len(re.findall(r'<rect class="bar', svg)) == days
        assert 'role="img"' in svg and 'aria-labelledby="spend-chart-title spend-chart-desc"' in svg
    html = html_of(client_for(admin).get(reverse("spend")))
    assert "the most on" in html and "2 days with spend, $3.90 in all" in html
    # CSP: no inline script or style, no CDN.
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    assert "https://" not in re.sub(r'href="[^"]*"', "", html)


def test_the_chart_scales_to_a_round_maximum():
    month = Month(2026, 5)
    chart = day_chart(month, {month.days[2]: Decimal("3.40"), month.days[3]: Decimal("1.70")})
    assert [tick.label for tick in chart.ticks] == ["$0.00", "$1.25", "$2.50", "$3.75", "$5.00"]
    tall, half = chart.bars[2], chart.bars[3]
    assert Decimal(tall.height) == Decimal(PLOT_BOTTOM - PLOT_TOP) * Decimal("3.40") / 5
    assert Decimal(half.height) * 2 == Decimal(tall.height)
    assert chart.peak is tall and tall.label == "Sun 3 May: $3.40"


def test_spend_page_escapes_team_tag_and_user_names(make_user, team, admin):
    team.name = "<script>alert(1)</script>"
    team.save()
    evil = join(team, make_user("eve"))
    billed(evil, team, "1.00", month_day(1), tags=['<img src=x onerror="alert(1)">'])
    html = html_of(client_for(admin).get(reverse("spend")))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_a_user_without_a_team_sees_their_personal_spend(make_user, owner, team, month_of_spend):
    loner = make_user("lena")
    billed(loner, None, "0.30", month_day(1))
    html = html_of(client_for(loner).get(reverse("spend")))
    assert shown(html, "spent") == "$0.30"
    assert "your personal renders" in html
    # Olivia's personal renders are hers alone, beside her team's.
    billed(owner, None, "0.20", month_day(1))
    assert shown(html_of(client_for(owner).get(spend_url(team="personal"))), "spent") == "$0.20"


# --- the ledger CSV --------------------------------------------------------------------------------------------


def ledger_csv(user, **query) -> tuple[object, list[list[str]]]:
    response = client_for(user).get(reverse("ledger_csv"), query)
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return response, list(csv.reader(io.StringIO(text)))


def test_the_csv_lists_every_entry_of_the_month_for_an_admin(admin, team, month_of_spend):
    response, rows = ledger_csv(admin)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    month = Month.current().param
    assert response["Content-Disposition"] == f'attachment; filename="ledger-acme-{month}.csv"'
    assert rows[0] == ["created_at", "kind", "amount_usd", "render_id", "user", "model", "team", "note"]
    body = rows[1:]
    assert (
        len(body) == 9
    )  # 3 bills (hold + settle), 1 running hold, 1 hold + release; last month's are not here
    first = body[0]
    assert first[0] == month_day(1).isoformat()
    pro = [row for row in body if row[3] == str(month_of_spend["tom_pro"].pk)]
    assert [(row[1], row[2], row[4], row[5], row[6]) for row in pro] == [
        ("hold", "2.0000", "tom", "sora-2-pro", "Acme"),
        ("settle", "2.0000", "tom", "sora-2-pro", "Acme"),
    ]
    assert sum(Decimal(row[2]) for row in body if row[1] == "settle") == Decimal("3.90")


def test_the_csv_gives_a_member_only_their_own_entries(owner, month_of_spend):
    _, rows = ledger_csv(owner)
    assert {row[4] for row in rows[1:]} == {"olivia"}
    assert len(rows) - 1 == 5  # two bills (hold + settle) and the running hold


FORMULA_LEADS = ["=", "+", "-", "@", "\t", "\r"]  # what spreadsheets read as the start of a formula (OWASP)


def test_the_csv_defuses_spreadsheet_formulas(make_user, team, admin):
    team.name = '=HYPERLINK("http://evil")'
    team.save()
    plus = join(team, make_user("+mallory"))
    at = join(team, make_user("@eve"))
    render = billed(plus, team, "1.00", month_day(1))
    entry(make_render(at, team=team), LedgerKind.HOLD, "0.50", month_day(1), note="-2+3 cmd|' /C calc'!A0")
    _, rows = ledger_csv(admin)
    cells = [cell for row in rows[1:] for cell in row]
    assert '\'=HYPERLINK("http://evil")' in cells
    assert "'+mallory" in cells and "'@eve" in cells
    assert "'-2+3 cmd|' /C calc'!A0" in cells
    assert not [cell for cell in cells if cell[:1] in FORMULA_LEADS]
    assert str(render.pk) in cells


@pytest.mark.parametrize(
    "lead", FORMULA_LEADS, ids=["equals", "plus", "minus", "at", "tab", "carriage-return"]
)
def test_the_csv_defuses_a_cell_starting_with_any_formula_character(admin, team, lead):
    note = f"{lead}cmd|' /C calc'!A0"
    entry(make_render(admin, team=team), LedgerKind.HOLD, "0.50", month_day(1), note=note)
    _, rows = ledger_csv(admin)
    [row] = rows[1:]
    assert row[7] == "'" + note


def test_the_csv_follows_the_month(admin, team, month_of_spend):
    last = Month.current().previous.param
    _, rows = ledger_csv(admin, team=str(team.pk), month=last)
    assert [(row[1], row[2]) for row in rows[1:]] == [("hold", "9.0000"), ("settle", "9.0000")]


# --- access and bad values -------------------------------------------------------------------------------------

PAGES = ["spend", "ledger_csv", "budgets", "rates", "reconcile"]


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["spend", "ledger_csv", "budgets", "reconcile"])
def test_a_team_one_is_not_in_is_not_found(outsider, team, admin, name):
    assert client_for(outsider).get(reverse(name), {"team": str(team.pk)}).status_code == 404


@pytest.mark.parametrize(
    ("name", "status"), [("spend", 200), ("ledger_csv", 200), ("budgets", 403), ("reconcile", 403)]
)
def test_members_see_spend_but_budgets_and_reconciliation_are_for_admins(owner, team, admin, name, status):
    assert client_for(owner).get(reverse(name), {"team": str(team.pk)}).status_code == status
    assert client_for(owner).get(reverse(name)).status_code == status  # the active team, by default
    assert client_for(admin).get(reverse(name)).status_code == 200


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("spend", {"month": "2026-13"}),
        ("spend", {"month": "May"}),
        ("spend", {"month": "1999-12"}),
        ("spend", {"month": "2026-5"}),
        ("spend", {"team": "acme"}),
        ("ledger_csv", {"month": "2026-00"}),
        ("ledger_csv", {"team": "1"}),
        ("budgets", {"team": "not-a-uuid"}),
        ("reconcile", {"tolerance": "-1"}),
        ("reconcile", {"tolerance": "abc"}),
        ("reconcile", {"tolerance": "NaN"}),
        ("reconcile", {"tolerance": "1001"}),
    ],
)
def test_bad_query_strings_are_a_400(admin, name, query):
    response = client_for(admin).get(reverse(name), query)
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def test_the_money_nav_offers_admin_pages_to_admins(admin, team):
    html = html_of(client_for(admin).get(reverse("spend")))
    assert f'href="{reverse("budgets")}?team={team.pk}"' in html
    assert f'href="{reverse("reconcile")}?team={team.pk}"' in html
    assert f'href="{reverse("ledger_csv")}?team={team.pk}&amp;month=' in html


# --- budgets ---------------------------------------------------------------------------------------------------


def post_budgets(user, team, data, **headers):
    return client_for(user).post(reverse("budget_set"), {"team": str(team.pk), **data}, **headers)


def budgets_of(team) -> dict:
    return {
        (b.user.get_username() if b.user else "team"): b.monthly_usd for b in Budget.objects.filter(team=team)
    }


def test_an_admin_sets_the_team_budget_and_members_budgets(admin, owner, teammate, team):
    html = html_of(client_for(admin).get(reverse("budgets")))
    assert (
        'name="team_budget"' in html
        and f'name="member_{owner.pk}"' in html
        and f'name="member_{admin.pk}"' in html
    )
    response = post_budgets(admin, team, {"team_budget": "$1,250.50", f"member_{owner.pk}": "20"})
    assert response.status_code == 302
    assert budgets_of(team) == {"team": Decimal("1250.50"), "olivia": Decimal("20.00")}
    olivia = Budget.objects.get(team=team, user=owner)
    assert olivia.updated_by == admin
    html = html_of(client_for(admin).get(response["Location"]))
    assert 'value="1250.50"' in html and 'value="20.00"' in html


def test_blank_removes_a_budget_and_unchanged_ones_are_left_alone(admin, owner, team):
    Budget.objects.create(team=team, monthly_usd=Decimal("100"))
    kept = Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("20"), updated_by=None)
    response = post_budgets(admin, team, {"team_budget": "", f"member_{owner.pk}": "20.00"})
    assert response.status_code == 302
    assert budgets_of(team) == {"olivia": Decimal("20.00")}
    kept.refresh_from_db()
    assert kept.updated_by is None  # not rewritten


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "greater than or equal to 0"),
        ("abc", "Enter a number"),
        ("1.234", "no more than 2 decimal places"),
        ("NaN", "Enter a number"),
        ("Infinity", "Enter a number"),
        ("12345678901", "no more than 10 digits before the decimal point"),
    ],
)
def test_a_bad_budget_stays_on_its_field_and_nothing_is_saved(admin, owner, team, value, message):
    response = post_budgets(admin, team, {"team_budget": "50", f"member_{owner.pk}": value})
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(rf'id="err-member_{owner.pk}"[^>]*>([^<]*)<', html).group(1)
    assert message in error
    assert re.search(r'id="err-team_budget"[^>]*></div>', html)  # the good field has no error
    assert budgets_of(team) == {}


def test_budget_changes_over_htmx_answer_with_the_form(admin, owner, team):
    response = post_budgets(admin, team, {"team_budget": "x"}, **HTMX)
    assert response.status_code == 200  # htmx swaps 2xx only: the form with its errors
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="budget-form"') and "<html" not in html
    response = post_budgets(admin, team, {"team_budget": "7"}, **HTMX)
    assert response.status_code == 200 and 'value="7.00"' in response.content.decode()
    assert "Saved 1 budget change" in response.content.decode()  # the toast rides along
    assert budgets_of(team) == {"team": Decimal("7.00")}


def test_the_budget_form_shows_this_months_usage(admin, owner, team, month_of_spend):
    Budget.objects.create(team=team, user=owner, monthly_usd=Decimal("5"))
    html = html_of(client_for(admin).get(reverse("budgets")))
    assert [shown(html, k, within="olivia") for k in ("used", "held", "left")] == ["$1.90", "$0.80", "$2.30"]


def test_only_team_admins_set_budgets_and_only_for_their_members(owner, admin, outsider, team):
    assert post_budgets(owner, team, {"team_budget": "1"}).status_code == 403
    assert post_budgets(outsider, team, {"team_budget": "1"}).status_code == 404
    assert post_budgets(admin, team, {f"member_{outsider.pk}": "5", "team_budget": ""}).status_code == 302
    assert budgets_of(team) == {}  # Oscar is not in Acme: no field, no budget
    assert client_for(admin).post(reverse("budget_set"), {"team": "personal"}).status_code == 400


def test_a_budget_set_here_is_the_one_the_submit_check_enforces(admin, owner, team):
    post_budgets(admin, team, {f"member_{owner.pk}": "0.40"})
    with pytest.raises(ledger.BudgetExceeded, match=r"only \$0.40 is left of your \$0.40"):
        with transaction.atomic():
            ledger.hold(make_render(owner, State.PENDING, team=team))


# --- the rate card ---------------------------------------------------------------------------------------------


def test_anyone_logged_in_reads_the_rate_card_with_its_units_and_sources(outsider):
    Rate.objects.filter(model="sora-2-pro", rate_key="1080p").update(
        source=RateSource.GATEWAY, last_seen_at=timezone.now() - timedelta(hours=2)
    )
    html = html_of(client_for(outsider).get(reverse("rates")))
    assert "1 credit = $1.00" in html
    sora2 = Rate.objects.get(model="sora2")
    pro = Rate.objects.get(model="sora-2-pro", rate_key="1080p")
    cells = cell_row(html, "rate-card", "key", "any")
    assert cells[:5] == ["Sora 2 (draft)", "any", "$0.10/s", "Studio default", "never"]
    assert cells[5] == "5 s = $0.50"
    pro_cells = cell_row(html, "rate-card", "key", "1080p")
    assert pro_cells[:4] == ["Sora 2 Pro", "1080p", "$0.23125/s", "Learned from the gateway"]
    assert pro_cells[4] == "2\xa0hours ago"
    assert pro_cells[5] == "8 s = $1.85"
    assert reverse("rate_set", args=[sora2.pk]) not in html and reverse("rate_set", args=[pro.pk]) not in html


def test_staff_set_a_rate_and_it_is_marked_as_set_by_an_admin(staff):
    rate = Rate.objects.get(model="sora-2-pro", rate_key="720p")
    response = client_for(staff).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": "0.15"})
    assert response.status_code == 302
    rate.refresh_from_db()
    assert (rate.usd_per_second, rate.source, rate.updated_by) == (Decimal("0.15"), RateSource.ADMIN, staff)
    html = html_of(client_for(staff).get(reverse("rates")))
    assert cell_row(html, "rate-card", "key", "720p")[2:4] == ["$0.15/s", "Set by an admin (sam)"]
    assert ledger.quote("sora-2-pro", {"duration_seconds": 4, "resolution": "720p"}).total == Decimal("0.60")


def test_a_rate_set_by_staff_over_htmx_answers_with_the_card(staff):
    rate = Rate.objects.get(model="sora2")
    response = client_for(staff).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": "0.12"}, **HTMX)
    html = html_of(response)
    assert html.lstrip().startswith('<table class="money-table rate-card" id="rate-card"')
    assert "$0.12/s" in html


@pytest.mark.parametrize("value", ["0", "-0.1", "abc", "0.0000001", ""])
def test_a_bad_rate_is_refused_on_its_line(staff, value):
    rate = Rate.objects.get(model="sora2")
    response = client_for(staff).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": value})
    assert response.status_code == 400
    assert re.search(rf'id="rate-error-{rate.pk}" role="alert">[^<]+<', response.content.decode())
    rate.refresh_from_db()
    assert (rate.usd_per_second, rate.source) == (Decimal("0.1"), RateSource.DEFAULT)


def test_only_staff_edit_the_rate_card(admin, owner):
    rate = Rate.objects.get(model="sora2")
    for person in (admin, owner):  # a team admin is not staff
        assert (
            client_for(person).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": "9"}).status_code
            == 403
        )
    rate.refresh_from_db()
    assert rate.usd_per_second == Decimal("0.1")


def test_staff_editing_a_missing_rate_get_404(staff):
    assert (
        client_for(staff).post(reverse("rate_set", args=[999999]), {"usd_per_second": "1"}).status_code == 404
    )


def test_the_gateway_does_not_override_an_admins_rate_but_is_seen(staff, owner, team):
    rate = Rate.objects.get(model="sora-2-pro", rate_key="1080p")
    client_for(staff).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": "0.25"})
    render = make_render(owner, team=team, model="sora-2-pro", estimated_cost=Decimal("2.00"))
    ledger.learn_rate(render, Decimal("1.85"))
    html = html_of(client_for(owner).get(reverse("rates")))
    cells = cell_row(html, "rate-card", "key", "1080p")
    assert cells[2:5] == ["$0.25/s", "Set by an admin (sam)", "0\xa0minutes ago"]


# --- reconciliation --------------------------------------------------------------------------------------------


def reconcile_html(user, **query) -> str:
    return html_of(client_for(user).get(reverse("reconcile"), query))


def test_renders_billed_beyond_the_tolerance_are_listed(admin, owner, team):
    exact = billed(owner, team, "1.00", month_day(1), estimate="1.00")
    edge = billed(owner, team, "1.05", month_day(1), estimate="1.00")  # exactly 5%: within
    over = billed(owner, team, "1.85", month_day(1), estimate="1.60", prompt="Pro, billed more")
    under = billed(owner, team, "0.90", month_day(1), estimate="1.00")
    html = reconcile_html(admin)
    listed = rows_of(html, "differs", "render")
    assert set(listed) == {str(over.pk), str(under.pk)}
    assert cell_row(html, "differs", "render", str(over.pk))[2:] == ["$1.60", "$1.85", "+$0.25", "+15.6%"]
    assert cell_row(html, "differs", "render", str(under.pk))[2:] == ["$1.00", "$0.90", "−$0.10", "-10.0%"]
    assert f'href="/renders/{over.pk}/detail/"' in html and "Pro, billed more" in html
    assert str(exact.pk) not in html and str(edge.pk) not in html
    # A tighter tolerance lists the 5% one too; a looser one lists none.
    assert str(edge.pk) in rows_of(reconcile_html(admin, tolerance="4.9"), "differs", "render")
    assert rows_of(reconcile_html(admin, tolerance="20"), "differs", "render") == []
    assert "Every completed render was billed within 20%" in reconcile_html(admin, tolerance="20")


def test_cancelled_renders_billed_in_part_are_not_mismatches(admin, owner, team):
    cancelled = billed(owner, team, "0.20", month_day(1), estimate="1.00")
    Render.objects.filter(pk=cancelled.pk).update(state=State.CANCELLED)
    assert rows_of(reconcile_html(admin), "differs", "render") == []


def test_renders_stuck_holding_money_are_listed_until_settled(
    admin, owner, team, django_capture_on_commit_callbacks
):
    unknown = holding(
        owner, team, "0.50", month_day(1), state=State.SUBMIT_UNKNOWN, finished_at=timezone.now()
    )
    stalled = holding(owner, team, "1.85", month_day(1), state=State.STALLED, finished_at=timezone.now())
    unsettled = holding(owner, team, "0.30", month_day(1), state=State.FAILED, finished_at=timezone.now())
    running = holding(owner, team, "0.70", month_day(1))  # in progress: not stuck
    html = reconcile_html(admin)
    assert rows_of(html, "stuck", "render") == [str(unknown.pk), str(stalled.pk), str(unsettled.pk)]
    assert cell_row(html, "stuck", "render", str(stalled.pk))[2:4] == ["Stalled", "$1.85"]
    assert "may yet bill" in html and "the next sweep settles it" in html
    assert f'href="/renders/{unknown.pk}/detail/"' in html
    assert str(running.pk) not in html

    ledger.settle(unsettled.pk)  # the sweep's job
    entry(stalled, LedgerKind.RELEASE, "0", timezone.now())  # e.g. an operator found it was never billed
    assert rows_of(reconcile_html(admin), "stuck", "render") == [str(unknown.pk)]


def test_someone_elses_private_render_is_listed_without_its_prompt(admin, teammate, team):
    secret = holding(
        teammate, team, "0.50", month_day(1), state=State.STALLED, private=True, prompt="Top secret"
    )
    html = reconcile_html(admin)
    assert str(secret.pk) in rows_of(html, "stuck", "render")
    assert "Top secret" not in html and f"/renders/{secret.pk}/detail/" not in html
    assert "a private render" in html


def test_reconciliation_is_per_team(admin, owner, make_user, team):
    other = Team.objects.create(name="Other", slug="other")
    stranger = join(other, make_user("sue"), Role.ADMIN)
    theirs = billed(stranger, other, "3.00", month_day(1), estimate="1.00")
    ours = billed(owner, team, "3.00", month_day(1), estimate="1.00")
    assert rows_of(reconcile_html(admin), "differs", "render") == [str(ours.pk)]
    assert rows_of(reconcile_html(stranger), "differs", "render") == [str(theirs.pk)]


def test_exact_decimal_tolerance_where_floats_would_wobble():
    assert not reports.beyond(Decimal("1.00"), Decimal("1.05"), Decimal("5"))
    assert reports.beyond(Decimal("1.00"), Decimal("1.0501"), Decimal("5"))
    assert reports.beyond(Decimal("0"), Decimal("0.01"), Decimal("5"))
    assert not reports.beyond(Decimal("0.30"), Decimal("0.33"), Decimal("10"))


# --- months ----------------------------------------------------------------------------------------------------


def test_months_step_across_years():
    assert Month(2026, 12).next == Month(2027, 1)
    assert Month(2026, 1).previous == Month(2025, 12)
    assert parse_month("2026-12").end.isoformat() == "2027-01-01T00:00:00+00:00"


# --- pinned query counts ---------------------------------------------------------------------------------------


def fill(owner, teammate, team, n: int) -> None:
    """n billed renders with tags, n held ones and n stuck or mis-billed ones, by two people."""
    for i in range(n):
        who = (owner, teammate)[i % 2]
        billed(
            who, team, "0.50", month_day(1 + i % 5), tags=[f"t{i % 3}"], model=("sora2", "sora-2-pro")[i % 2]
        )
        holding(who, team, "0.40", month_day(1))
        billed(who, team, "0.90", month_day(1), estimate="0.50")
        holding(who, team, "0.30", month_day(1), state=State.STALLED, finished_at=timezone.now())


# The spend page, for an admin, whatever the number of renders, members and budgets:
#  1 session, 2 user (auth), 3 memberships with teams and 4 the team picked (access.viewer: the active team,
#  none picked, is the oldest of those teams, and the admin's role in it is read off the same rows),
#  5 members (admins see everyone)
#  6 spend per day, 7 per user, 8 held per user, 9 per model, 10 per tag, 11 untagged, 12 budgets
#  then the context processors, lazily, in the order base.html reads them (the reviewer teams and the
#  switcher's active team come from the rows read above): 13 count of renders to review, 14 gateway alerts
SPEND_QUERIES = 14
# Reconciliation: 1-4 as above, 5 mismatches, 6 stuck holds, then 7-8 the context processors' (13-14 above).
RECONCILE_QUERIES = 8


@pytest.mark.parametrize("n", [1, 12])
def test_the_spend_page_costs_the_same_queries_whatever_it_shows(
    admin, owner, teammate, team, n, django_assert_num_queries
):
    fill(owner, teammate, team, n)
    Budget.objects.create(team=team, monthly_usd=Decimal("100"))
    for person in (owner, teammate, admin)[: 1 if n == 1 else 3]:  # more budgets, same queries
        Budget.objects.create(team=team, user=person, monthly_usd=Decimal("10"))
    browser = client_for(admin)
    with django_assert_num_queries(SPEND_QUERIES):
        html = html_of(browser.get(reverse("spend")))
    assert shown(html, "spent") == f"${Decimal('1.40') * n:.2f}"


@pytest.mark.parametrize("n", [1, 12])
def test_the_reconciliation_page_costs_the_same_queries_whatever_it_lists(
    admin, owner, teammate, team, n, django_assert_num_queries
):
    fill(owner, teammate, team, n)
    browser = client_for(admin)
    with django_assert_num_queries(RECONCILE_QUERIES):
        html = html_of(browser.get(reverse("reconcile")))
    assert len(rows_of(html, "differs", "render")) == n
    assert len(rows_of(html, "stuck", "render")) == n


def test_the_rate_card_links_to_the_admin_pages_of_the_active_team(admin, owner, team):
    assert f'href="{reverse("budgets")}?team={team.pk}"' in html_of(client_for(admin).get(reverse("rates")))
    assert reverse("budgets") not in html_of(client_for(owner).get(reverse("rates")))


def test_the_cancel_cost_uses_the_rate_card_the_render_was_quoted_with(staff, owner, team):
    rate = Rate.objects.get(model="sora2")
    client_for(staff).post(reverse("rate_set", args=[rate.pk]), {"usd_per_second": "0.20"})
    quote = ledger.quote("sora2", {"duration_seconds": 5, "size": "1280x720"})
    render = make_render(owner, State.RUNNING, team=team, estimated_cost=quote.total, progress=100)
    Render.objects.filter(pk=render.pk).update(rate_per_second=quote.rate_per_second)  # as quoted at submit
    render.refresh_from_db()
    assert render.cancel_cost == quote.total == Decimal("1.00")
