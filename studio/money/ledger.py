"""The ledger: the live rate card, budgets with holds, and the append-only ledger reconciled with the bill.

- The estimate is `pricing.estimate()` (pure) over the rate card read here from the database.
- At submit, `hold()` reserves the estimate against the team's and the author's monthly budgets inside the
  transaction that creates the render: the budget rows are locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite
  takes its write lock at BEGIN IMMEDIATE), so two submits at once cannot together exceed a budget.
- When a render ends, `settle()` writes exactly one outcome: `settle` with what the gateway billed, or `release`
  when nothing was billed. Unique constraints make a second attempt a no-op; the sweep settles any render a crash
  left ended but unsettled. `submit_unknown` and `stalled` renders keep holding: they may yet be billed.
- When a hold counts as held is decided once, here: `still_held()` (entries) and `unsettled()` (renders). The
  budget check, the spend report and reconciliation all ask them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from studio import pricing
from studio.catalog import SORA2_PRO
from studio.models import (
    IN_FLIGHT,
    Budget,
    LedgerEntry,
    LedgerKind,
    Rate,
    RateSource,
    Render,
    State,
)

log = logging.getLogger("studio.money")  # the logger's name predates the package; log filters may use it

# Sora 2's price is fixed by its page ($0.10/s); Sora 2 Pro bills at a live rate the card learns.
LIVE_RATE_MODELS = frozenset({SORA2_PRO})
STILL_HOLDING = frozenset({State.SUBMIT_UNKNOWN, State.STALLED})  # ended for us, maybe billed at the gateway
ENDS_A_HOLD = (LedgerKind.SETTLE, LedgerKind.RELEASE)  # a render's outcome: at most one (ledger_one_outcome)
ZERO = Decimal("0")
UNREPORTED = "The gateway reported no bill: settled at the estimate."
# A learned rate is a bill (rounded by the gateway to 4 places) over whole seconds: it is only good to about
# 0.0001 / seconds, so keep five places. $0.13875/s stays exact; 3.4688 credits / 15 s gives $0.23125/s, not the
# noise $0.231253/s that would then leak into every estimate.
RATE_PLACES = Decimal("0.00001")


# --- the rate card --------------------------------------------------------------------------------------------


def rate_card() -> dict[str, dict[str, Decimal]]:
    """The rate card as `pricing.estimate` takes it: the database's lines over the built-in defaults."""
    card = {model: dict(rates) for model, rates in pricing.RATE_CARD.items()}
    for model, key, usd in Rate.objects.values_list("model", "rate_key", "usd_per_second"):
        card.setdefault(model, {})[key] = usd
    return card


def quote(model: str, params: dict) -> pricing.Estimate:
    """The estimate every part of the studio uses: the form, the CLI, promotion and the budget check."""
    return pricing.estimate(model, params, rate_card())


def learn_rate(render: Render, credits: Decimal | None, *, seen_at: datetime | None = None) -> Rate | None:
    """Record the per-second rate the gateway just showed for a render (estimated or billed credits).

    Only whole-render figures teach the card: a partial bill from a cancel says nothing about the rate.
    """
    if credits is None or credits <= 0 or not render.duration_seconds or render.model not in LIVE_RATE_MODELS:
        return None
    spec = render.spec
    usd = (pricing.credits_to_usd(credits) / render.duration_seconds).quantize(RATE_PLACES, ROUND_HALF_UP)
    key = spec.rate_key(render.params)
    rate, _ = Rate.objects.get_or_create(model=render.model, rate_key=key, defaults={"usd_per_second": usd})
    if rate.source == RateSource.ADMIN:
        # An admin's figure wins; still note when the gateway last confirmed a rate for this line.
        Rate.objects.filter(pk=rate.pk).update(last_seen_at=seen_at or timezone.now())
        return rate
    Rate.objects.filter(pk=rate.pk).update(
        usd_per_second=usd,
        source=RateSource.GATEWAY,
        last_seen_at=seen_at or timezone.now(),
        updated_at=timezone.now(),
    )
    rate.refresh_from_db()
    return rate


# --- the held/ended rule --------------------------------------------------------------------------------------


def _holds_of(render: OuterRef) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(render=render, kind=LedgerKind.HOLD)


def _outcomes_of(render: OuterRef) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(render=render, kind__in=ENDS_A_HOLD)


def still_held(
    entries: QuerySet[LedgerEntry], since: datetime, until: datetime | None = None, *, in_flight: bool = True
) -> QuerySet[LedgerEntry]:
    """The holds among `entries` whose render has not ended (no settle, no release): the money still reserved.

    Those taken in [since, until), and with `in_flight` also older holds of renders still in flight: taken last
    month, they settle this month, so they count until they end.
    """
    when = Q(created_at__gte=since)
    if until is not None:
        when &= Q(created_at__lt=until)
    if in_flight:
        when |= Q(render__state__in=IN_FLIGHT)
    return entries.filter(when, kind=LedgerKind.HOLD).exclude(Exists(_outcomes_of(OuterRef("render"))))


def unsettled(renders: QuerySet[Render]) -> QuerySet:
    """The renders among `renders` that hold money no settle or release has ended yet, annotated with `held`."""
    return (
        renders.filter(Exists(_holds_of(OuterRef("pk"))))
        .exclude(Exists(_outcomes_of(OuterRef("pk"))))
        .annotate(held=Subquery(_holds_of(OuterRef("pk")).values("amount")[:1]))
    )


# --- budgets --------------------------------------------------------------------------------------------------


def month_start(now: datetime | None = None) -> datetime:
    """The first instant of the current month (UTC): budgets are monthly."""
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    limit: Decimal
    used: Decimal  # settled this month
    held: Decimal  # reserved by renders that have not ended yet

    @property
    def left(self) -> Decimal:
        return self.limit - self.used - self.held

    @property
    def scope(self) -> str:
        user = self.budget.user  # no query when the budget is the team's (user_id empty)
        return f"{user.get_username()}'s" if user is not None else f"team {self.budget.team.name}'s"

    def percent(self, amount: Decimal) -> float:
        return float(min(Decimal(100), amount * 100 / self.limit)) if self.limit else 100.0


def _entries_for(budget: Budget):
    rows = LedgerEntry.objects.filter(team=budget.team_id)
    return rows.filter(user=budget.user_id) if budget.user_id else rows


def budget_status(budget: Budget, since: datetime | None = None) -> BudgetStatus:
    """Used, held and left of a budget this month, from the ledger alone."""
    since = since or month_start()
    rows = _entries_for(budget).filter(created_at__gte=since)
    used = rows.filter(kind=LedgerKind.SETTLE).aggregate(total=Sum("amount"))["total"] or ZERO
    held = still_held(_entries_for(budget), since).aggregate(total=Sum("amount"))["total"] or ZERO
    return BudgetStatus(budget=budget, limit=budget.monthly_usd, used=used, held=held)


def budgets_for(render: Render, *, lock: bool = False) -> list[Budget]:
    """The budgets a render counts against: its team's, and its author's within that team."""
    return _budgets(render.team_id, render.user_id, lock=lock)


def _budgets(team_id, user_id, *, lock: bool = False) -> list[Budget]:
    if team_id is None:
        return []
    rows = Budget.objects.filter(Q(user__isnull=True) | Q(user=user_id), team=team_id)
    if lock:
        # Only the budget rows: PostgreSQL refuses FOR UPDATE on the nullable side of the outer join to `user`.
        rows = rows.select_for_update(of=("self",))
    return list(rows.select_related("team", "user").order_by("pk"))


class BudgetExceeded(Exception):
    """A submit refused before anything was sent, saying how much is left."""

    def __init__(self, status: BudgetStatus, amount: Decimal, *, submitter_id=None, count: int = 1) -> None:
        left = max(status.left, ZERO)
        scope = "your" if submitter_id is not None and status.budget.user_id == submitter_id else status.scope
        what = "This render would cost" if count == 1 else f"These {count} variants would cost"
        message = (
            f"{what} {pricing.dollars(amount)}, but only {pricing.dollars(left)} is left of "
            f"{scope} {pricing.dollars(status.limit)} monthly budget "
            f"({pricing.dollars(status.used)} spent, {pricing.dollars(status.held)} held by renders in progress)."
        )
        if count > 1:
            # A batch is held whole or not at all: say how many of them would fit.
            each = amount / count
            fit = int(left // each) if each > 0 else count
            message += " Nothing was rendered: " + (
                "not even one fits." if fit == 0 else f"{fit} would fit, so render ×{fit} or fewer."
            )
        super().__init__(message)
        self.message = message
        self.status = status


def _exceeded(budgets: list[Budget], amount: Decimal, submitter_id, count: int) -> BudgetExceeded | None:
    """The first budget that `amount` (`count` renders together) would overrun this month, as the refusal."""
    for budget in budgets:
        status = budget_status(budget)
        if amount > status.left:
            return BudgetExceeded(status, amount, submitter_id=submitter_id, count=count)
    return None


def over_budget(user, team, amount: Decimal, count: int = 1) -> str:
    """What the live estimate says when `amount` (`count` variants together) would exceed the team's or the
    member's budget this month: the words a submit would be refused with, else "". Read only: the submit's hold
    decides, with the rows locked."""
    if team is None or not user.is_authenticated:
        return ""
    refused = _exceeded(_budgets(team.pk, user.pk), amount, user.pk, count)
    return refused.message if refused else ""


def hold(render: Render) -> LedgerEntry:
    """Reserve the render's estimate against its budgets; call inside the transaction that created it."""
    return hold_all([render])[0]


def hold_all(renders: list[Render]) -> list[LedgerEntry]:
    """Reserve the estimates of renders submitted together (the variants of one "Render ×N", same author and team)
    against their budgets, all or none: BudgetExceeded names the batch's total when it does not fit whole.

    Call inside the transaction that created them; the budget rows stay locked until it ends.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("hold() must run inside the transaction that creates the render")
    first = renders[0]
    if any(r.team_id != first.team_id or r.user_id != first.user_id for r in renders):
        raise ValueError("hold_all() holds one author's renders in one team")
    amount = sum((r.estimated_cost for r in renders), ZERO)
    refused = _exceeded(budgets_for(first, lock=True), amount, first.user_id, len(renders))
    if refused:
        raise refused
    return [
        LedgerEntry.objects.create(
            render=render,
            kind=LedgerKind.HOLD,
            amount=render.estimated_cost,
            team=render.team,
            user=render.user,
            model=render.model,
        )
        for render in renders
    ]


# --- settlement -----------------------------------------------------------------------------------------------


def outcome(render: Render) -> tuple[str, Decimal] | None:
    """How a render's hold ends: (settle, billed) or (release, 0); None while it may still be billed."""
    if not render.is_terminal or render.state in STILL_HOLDING:
        return None
    if render.billed_cost is None and render.gateway_completed_at is not None:
        # The gateway rendered it but reported no bill (Sora 2's poll does not document `credits`): it was
        # billed all the same, so the estimate is settled rather than a spend of zero.
        return LedgerKind.SETTLE, render.estimated_cost
    billed = render.billed_cost or ZERO
    if billed > 0:
        return LedgerKind.SETTLE, billed
    return LedgerKind.RELEASE, ZERO


def settle(render_id) -> str:
    """End a render's hold exactly once, from what the gateway billed. Safe to call any number of times."""
    render = Render.objects.select_related("team", "user").filter(pk=render_id).first()
    if render is None or not LedgerEntry.objects.filter(render=render, kind=LedgerKind.HOLD).exists():
        return "no-hold"
    result = outcome(render)
    if result is None:
        return "holding"
    kind, amount = result
    try:
        with transaction.atomic():
            LedgerEntry.objects.create(
                render=render,
                kind=kind,
                amount=amount,
                team=render.team,
                user=render.user,
                model=render.model,
                note=UNREPORTED if kind == LedgerKind.SETTLE and render.billed_cost is None else "",
            )
    except IntegrityError:
        return "already"
    if kind == LedgerKind.SETTLE and render.state == State.COMPLETED:
        learn_rate(render, render.billed_credits)
    log.info("Render %s %s: $%s", render.pk, kind, amount)
    return str(kind)


def settle_missing(limit: int = 500) -> int:
    """Settle renders that ended without a settlement (a crash between the bill and the ledger)."""
    pending = (
        unsettled(Render.objects.all())
        .exclude(state__in=[*STILL_HOLDING])
        .filter(finished_at__isnull=False)
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for rid in list(pending) if settle(rid) in (LedgerKind.SETTLE, LedgerKind.RELEASE))
