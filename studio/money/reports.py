"""Spend and reconciliation reports: aggregation queries over the ledger, a constant number of them per page.

Everything here reads; nothing writes. Amounts are dollars (1 credit = $1, see `pricing`), as `Decimal`.
- Spend is what the ledger settled (the gateway's bill); held is the estimates still reserved by renders of the
  month that have not ended (`ledger.still_held`). Months and days are UTC, like the budgets (`ledger.month_start`).
- Whose money a report covers is an `access.MoneyScope`: a team's (every member's lines for its admins; the team's
  totals and their own line for everyone else), or the viewer's personal renders (no team, no budgets).
- Tags are the render's Tag rows; a render with two tags counts under both, so the tag table does not add up to
  the total. Tags on someone else's private render are not shown (nobody else may see that render): its spend
  counts as untagged.
- The month and tolerance come from `money.params`; the day chart's geometry from `money.chart`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from studio import pricing
from studio.access import MoneyScope
from studio.catalog import MODELS
from studio.models import TERMINAL, Budget, LedgerEntry, LedgerKind, Render, State, Tag, Team
from studio.money import ledger
from studio.money.chart import Chart, day_chart, svg_number
from studio.money.params import Month

ZERO = Decimal("0")
RECONCILE_LIMIT = 200  # rows per reconciliation list; the page says when there are more
# A superset margin for the database's first cut (SQLite computes decimals as floats); Python decides exactly.
FLOAT_MARGIN = Decimal("0.000001")


# --- spend ----------------------------------------------------------------------------------------------------


@dataclass
class Line:
    """One row of a spend table."""

    key: str
    label: str
    renders: int = 0
    spent: Decimal = ZERO
    held: Decimal = ZERO


@dataclass
class SpendReport:
    scope: MoneyScope
    month: Month
    spent: Decimal
    held: Decimal
    my_spent: Decimal
    my_held: Decimal
    chart: Chart
    by_user: list[Line]
    by_model: list[Line]
    by_tag: list[Line]
    untagged: Line
    budgets: list[BudgetBar] = field(default_factory=list)


def _in_month(rows: QuerySet, month: Month) -> QuerySet:
    return rows.filter(created_at__gte=month.start, created_at__lt=month.end)


def _held(rows: QuerySet, month: Month) -> QuerySet:
    """The month's holds still reserving money; in the current month also older holds of renders in flight."""
    return ledger.still_held(rows, month.start, month.end, in_flight=month.is_current)


def spend_report(scope: MoneyScope, month: Month, members: list | None = None) -> SpendReport:
    """Totals, spend per day, per user, per model and per tag, and the budget bars: seven queries.

    `members` (users) are listed even without spend, for admins who see every member.
    """
    ledger = _in_month(scope.ledger(), month)
    settled = ledger.filter(kind=LedgerKind.SETTLE)

    # 1: per day (UTC)
    per_day = {
        row["day"]: row["total"]
        for row in settled.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount"))
        .order_by("day")
    }
    # 2: settled per user, 3: held per user (the team's, whatever the viewer may list line by line)
    spent_by_user = {
        row["user"]: row
        for row in settled.values("user", "user__username")
        .annotate(total=Sum("amount"), renders=Count("render", distinct=True))
        .order_by()
    }
    held_by_user = {
        row["user"]: row
        for row in _held(scope.ledger(), month)
        .values("user", "user__username")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    spent = sum((row["total"] for row in spent_by_user.values()), ZERO)
    held = sum((row["total"] for row in held_by_user.values()), ZERO)
    viewer_id = scope.viewer.pk

    lines: dict[int, Line] = {}
    for user in members or []:
        lines[user.pk] = Line(str(user.pk), user.get_username())
    for user_id, row in spent_by_user.items():
        line = lines.setdefault(user_id, Line(str(user_id), row["user__username"]))
        line.spent, line.renders = row["total"], row["renders"]
    for user_id, row in held_by_user.items():
        lines.setdefault(user_id, Line(str(user_id), row["user__username"])).held = row["total"]
    if not scope.sees_everyone:
        me = scope.person()
        lines = {me.pk: lines.get(me.pk) or Line(str(me.pk), me.get_username())}
    by_user = sorted(lines.values(), key=lambda line: (-line.spent, -line.held, line.label.lower()))

    # 4: per model
    by_model = [
        Line(
            row["model"],
            MODELS[row["model"]].label if row["model"] in MODELS else row["model"],
            row["renders"],
            row["total"],
        )
        for row in settled.values("model")
        .annotate(total=Sum("amount"), renders=Count("render", distinct=True))
        .order_by("-total", "model")
    ]

    # 5: per tag, 6: untagged (tags the viewer may see: not on someone else's private render)
    visible = Q(render__private=False) | Q(render__user_id=scope.viewer.pk)
    tag_rows = (
        Tag.objects.filter(visible, render__ledger__in=settled)  # the Sum below adds up this same join
        .values("name")
        .annotate(total=Sum("render__ledger__amount"), renders=Count("render", distinct=True))
        .order_by("-total", "name")
    )
    by_tag = [Line(row["name"], row["name"], row["renders"], row["total"]) for row in tag_rows]
    has_tag = Tag.objects.filter(
        Q(render__private=False) | Q(render__user_id=scope.viewer.pk), render=OuterRef("render")
    )
    untagged_row = settled.exclude(Exists(has_tag)).aggregate(
        total=Sum("amount"), renders=Count("render", distinct=True)
    )
    untagged = Line("", "No tag", untagged_row["renders"], untagged_row["total"] or ZERO)

    report = SpendReport(
        scope=scope,
        month=month,
        spent=spent,
        held=held,
        my_spent=spent_by_user.get(viewer_id, {}).get("total", ZERO),
        my_held=held_by_user.get(viewer_id, {}).get("total", ZERO),
        chart=day_chart(month, per_day),
        by_user=by_user,
        by_model=by_model,
        by_tag=by_tag,
        untagged=untagged,
    )
    # 7: the budgets, whose bars are the current month's (budgets are monthly; a past month has no "left")
    if scope.team is not None and month.is_current:
        report.budgets = budget_bars(scope, spent_by_user, held_by_user)
    return report


# --- budget bars ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetBar:
    """A budget's used, held and left, as a bar in percent of its limit (ledger.BudgetStatus for the numbers)."""

    status: ledger.BudgetStatus
    used_pct: str
    held_pct: str
    held_x: str

    @property
    def over(self) -> bool:
        return self.status.left < 0

    @property
    def over_by(self) -> Decimal:
        return max(ZERO, -self.status.left)

    @property
    def label(self) -> str:
        s = self.status
        left = f"{pricing.dollars(s.left)} left" if s.left >= 0 else f"{pricing.dollars(-s.left)} over"
        return (
            f"{s.scope} budget: {pricing.dollars(s.used)} used, {pricing.dollars(s.held)} held, {left} "
            f"of {pricing.dollars(s.limit)}"
        )


def budgets_shown(scope: MoneyScope) -> QuerySet:
    """The team's budget and its members' (admins), or the team's and the viewer's own (other members)."""
    rows = Budget.objects.filter(team=scope.team).select_related("team", "user")
    if not scope.sees_everyone:
        rows = rows.filter(Q(user__isnull=True) | Q(user_id=scope.viewer.pk))
    return rows.order_by(F("user__username").asc(nulls_first=True))


def budget_statuses(budgets, spent_by_user: dict, held_by_user: dict) -> list[ledger.BudgetStatus]:
    """`ledger.budget_status` for many budgets of one team from two grouped queries instead of two each.

    Same definition: settled and still-held entries of the current month, the team's or one member's.
    """
    statuses = []
    for budget in budgets:
        if budget.user_id is None:
            used = sum((row["total"] for row in spent_by_user.values()), ZERO)
            held = sum((row["total"] for row in held_by_user.values()), ZERO)
        else:
            used = spent_by_user.get(budget.user_id, {}).get("total", ZERO)
            held = held_by_user.get(budget.user_id, {}).get("total", ZERO)
        statuses.append(ledger.BudgetStatus(budget=budget, limit=budget.monthly_usd, used=used, held=held))
    return statuses


def team_month_usage(team: Team) -> tuple[dict, dict]:
    """This month's settled and held amounts of a team, per member: two queries."""
    month = Month.current()
    rows = LedgerEntry.objects.filter(team=team)
    settled = _in_month(rows, month).filter(kind=LedgerKind.SETTLE)
    spent = {row["user"]: row for row in settled.values("user").annotate(total=Sum("amount")).order_by()}
    held = {
        row["user"]: row for row in _held(rows, month).values("user").annotate(total=Sum("amount")).order_by()
    }
    return spent, held


def budget_bars(scope: MoneyScope, spent_by_user: dict, held_by_user: dict) -> list[BudgetBar]:
    return [bar_for(status) for status in budget_statuses(budgets_shown(scope), spent_by_user, held_by_user)]


def _pct(amount: Decimal, limit: Decimal) -> Decimal:
    if limit <= 0:
        return Decimal(100) if amount > 0 else ZERO
    return min(Decimal(100), max(ZERO, amount * 100 / limit))


def bar_for(status: ledger.BudgetStatus) -> BudgetBar:
    used = _pct(status.used, status.limit)
    held = min(Decimal(100) - used, _pct(status.held, status.limit))
    return BudgetBar(
        status=status, used_pct=svg_number(used), held_pct=svg_number(held), held_x=svg_number(used)
    )


# --- reconciliation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """A finished render whose bill differs from its estimate beyond the tolerance."""

    render: Render
    estimate: Decimal
    billed: Decimal

    @property
    def difference(self) -> Decimal:
        return self.billed - self.estimate

    @property
    def magnitude(self) -> Decimal:
        return abs(self.difference)

    @property
    def percent(self) -> Decimal | None:
        if not self.estimate:
            return None
        return (self.difference * 100 / self.estimate).quantize(Decimal("0.1"))


def beyond(estimate: Decimal, billed: Decimal, tolerance: Decimal) -> bool:
    """Whether a bill differs from the estimate by more than `tolerance` percent of it (exact decimals)."""
    return abs(billed - estimate) * 100 > estimate * tolerance


def mismatches(
    scope: MoneyScope, tolerance: Decimal, limit: int = RECONCILE_LIMIT
) -> tuple[list[Mismatch], bool]:
    """Completed renders billed beyond `tolerance` percent of their estimate, newest first: one query.

    Only completed renders: a cancel bills the seconds rendered, so its bill differs from the estimate by design,
    and failed or queued-cancelled renders bill nothing. Returns the rows and whether there were more.
    """
    bound = F("estimated_cost") * (tolerance / 100) - FLOAT_MARGIN
    candidates = (
        scope.renders()
        .filter(state=State.COMPLETED, billed_cost__isnull=False)
        .exclude(billed_cost=F("estimated_cost"))
        .alias(diff=F("billed_cost") - F("estimated_cost"))
        .filter(Q(diff__gt=bound) | Q(diff__lt=-bound))
        .select_related("user")
        .order_by("-created_at", "pk")
    )
    rows = []
    for item in candidates[: limit + 1]:
        if beyond(item.estimated_cost, item.billed_cost, tolerance):
            rows.append(Mismatch(item, item.estimated_cost, item.billed_cost))
    return rows[:limit], len(rows) > limit


@dataclass(frozen=True)
class StuckHold:
    render: Render
    held: Decimal

    @property
    def reason(self) -> str:
        if self.render.state == State.SUBMIT_UNKNOWN:
            return "Submit outcome unknown: the gateway may have the task and may yet bill it."
        if self.render.state == State.STALLED:
            return "Stalled: no news from the gateway, which may yet bill it."
        return "Ended but not settled yet: the next sweep settles it."

    @property
    def remedy(self) -> str:
        """What a site operator can do about it (from the render's page, the admin or `manage.py renders`); empty
        when nothing needs doing."""
        if self.render.state == State.SUBMIT_UNKNOWN and not self.render.gateway_task_id:
            return (
                "Find it in the gateway's task list: attach it to that task (it is polled and settled as usual), "
                "or mark it not sent (the hold is released, or it is sent again)."
            )
        if self.render.state in (State.SUBMIT_UNKNOWN, State.STALLED):
            return "Recheck it at the gateway (it resumes if the gateway still has it)."
        return ""


def stuck_holds(scope: MoneyScope, limit: int = RECONCILE_LIMIT) -> tuple[list[StuckHold], bool]:
    """Renders that ended (for us) while their hold is neither settled nor released, oldest first: one query."""
    rows = list(
        ledger.unsettled(scope.renders().filter(state__in=TERMINAL))
        .select_related("user")
        .order_by("created_at", "pk")[: limit + 1]
    )
    return [StuckHold(item, item.held) for item in rows[:limit]], len(rows) > limit


# --- the ledger export ----------------------------------------------------------------------------------------

LEDGER_COLUMNS = ("created_at", "kind", "amount_usd", "render_id", "user", "model", "team", "note")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading quote (CSV injection)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def ledger_rows(scope: MoneyScope, month: Month):
    """The header, then every ledger entry of the month the viewer may see line by line, oldest first.

    One query, read in chunks: the export streams however long the month was.
    """
    yield list(LEDGER_COLUMNS)
    entries = (
        _in_month(scope.ledger_lines(), month).select_related("user", "team").order_by("created_at", "id")
    )
    for entry in entries.iterator(chunk_size=1000):
        yield [
            csv_cell(value)
            for value in (
                entry.created_at.astimezone(UTC).isoformat(),
                entry.kind,
                entry.amount,
                entry.render_id,
                entry.user.get_username(),
                entry.model,
                entry.team.name if entry.team else "",
                entry.note,
            )
        ]
