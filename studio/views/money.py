"""Views for money: spend, the ledger export, budgets, the rate card, reconciliation.

Views only: whose money a user may see is `access.money_scope_for_user`, the figures come from
`studio.money.reports`, the budget and rate forms live in `studio.forms`.

Who sees what (pinned by tests/test_money_pages.py):
- Spend (`?team=` a team id, or "personal"; default the active team): any member sees the team's totals and its
  spend per day, per model and per tag; team admins also see every member's line and budget, other members
  their own line and budget (and the team's). With no team, or `?team=personal`, one's own personal renders.
- The ledger CSV: every entry of the team for its admins, one's own entries for other members.
- Budgets and reconciliation: team admins (403 for other members). The rate card: anyone logged in; staff edit it.
- A team one is not in is a 404; a bad `team`, `month` or `tolerance` is a 400.
"""

from __future__ import annotations

import csv
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from studio import access, pricing
from studio.actions.money import do_set_budget, do_set_rate
from studio.catalog import MODELS
from studio.forms import BudgetsForm, RateForm
from studio.htmx import AuthenticatedHtmxRequest
from studio.models import Budget, Membership, Rate, Role
from studio.money import params, reports
from studio.params import BadValue
from studio.views.decorators import answers_400

# --- helpers --------------------------------------------------------------------------------------------------


def _nav(scope: access.MoneyScope, month: params.Month | None = None, here: str = "") -> dict:
    """The money pages' shared context: where we are, and links that keep the team and month."""
    month = month or params.Month.current()
    return {
        "scope": scope,
        "month": month,
        "here": here,
        "is_team_admin": scope.team is not None and scope.sees_everyone,
        "team_query": urlencode({"team": scope.param}),
        "scope_query": urlencode({"team": scope.param, "month": month.param}),
        "previous_query": urlencode({"team": scope.param, "month": month.previous.param}),
        "next_query": "" if month.is_current else urlencode({"team": scope.param, "month": month.next.param}),
    }


def _members(team) -> list:
    return [
        m.user for m in Membership.objects.filter(team=team).select_related("user").order_by("user__username")
    ]


# --- spend and the ledger -------------------------------------------------------------------------------------


def _scope_and_month(request: AuthenticatedHtmxRequest) -> tuple[access.MoneyScope, params.Month]:
    """Whose money and which month the query string asks for (BadValue, answered 400, when it cannot say)."""
    scope = access.money_scope_for_user(access.viewer(request), request.GET.get("team", ""))
    return scope, params.parse_month(request.GET.get("month"))


@login_required
@require_safe
@answers_400
def spend(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """A team's (or one's personal) spend for a month: totals, a chart per day, tables, budget bars."""
    scope, month = _scope_and_month(request)
    members = _members(scope.team) if scope.team is not None and scope.sees_everyone else None
    report = reports.spend_report(scope, month, members)
    return render(request, "spend.html", {"report": report, **_nav(scope, month, "spend")})


class _Echo:
    """A file-like object whose write returns the line: csv.writer formats, the response streams."""

    def write(self, value: str) -> str:
        return value


@login_required
@require_safe
@answers_400
def ledger_csv(request: AuthenticatedHtmxRequest) -> StreamingHttpResponse:
    """The month's ledger as CSV, streamed: every entry for team admins, one's own for other members."""
    scope, month = _scope_and_month(request)
    writer = csv.writer(_Echo())
    name = f"ledger-{scope.team.slug if scope.team else 'personal'}-{month.param}.csv"
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in reports.ledger_rows(scope, month)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- budgets --------------------------------------------------------------------------------------------------


def _budgets_context(scope: access.MoneyScope, form: BudgetsForm | None = None, data=None) -> dict:
    """The budget form, each field with this month's used, held and left beside it."""
    context = _nav(scope, here="budgets")
    if scope.team is None:
        return context
    budgets = list(Budget.objects.filter(team=scope.team).select_related("team", "user"))
    members = _members(scope.team)
    form = form or BudgetsForm(data, team=scope.team, members=members, budgets=budgets)
    spent, held = reports.team_month_usage(scope.team)
    bars = {
        bar.status.budget.user_id: bar
        for bar in map(reports.bar_for, reports.budget_statuses(budgets, spent, held))
    }
    rows = [
        {"name": form.field_name(user_id), "field": form[form.field_name(user_id)], "bar": bars.get(user_id)}
        for user_id in form.people
    ]
    return {**context, "form": form, "rows": rows}


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
@answers_400
def budgets(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The team's monthly budget and its members' (team admins only); POST saves them."""
    if request.method == "POST":
        return _save_budgets(request)
    scope = access.money_scope_for_user(access.viewer(request), request.GET.get("team", ""), Role.ADMIN)
    return render(request, "budgets.html", _budgets_context(scope))


def _save_budgets(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Save the budgets that changed (blank removes one); errors stay on their field."""
    scope = access.money_scope_for_user(access.viewer(request), request.POST.get("team", ""), Role.ADMIN)
    if scope.team is None:
        raise BadValue("Budgets belong to a team: say which one.")
    context = _budgets_context(scope, data=request.POST)
    form = context["form"]
    if not form.is_valid():
        if request.htmx:  # 200 so that htmx swaps the form in, errors and all
            return render(request, "budgets.html#budget-form", context)
        return render(request, "budgets.html", context, status=400)
    changes = form.changes()
    for user, amount in changes:
        do_set_budget(scope.team, user, amount, by=request.user)
    messages.success(request, f"Saved {len(changes)} budget change(s)." if changes else "Nothing changed.")
    if request.htmx:
        return render(request, "budgets.html#budget-form", _budgets_context(scope))
    return redirect(f"{reverse('budgets')}?{urlencode({'team': scope.param})}")


# --- the rate card --------------------------------------------------------------------------------------------


def _rates_context(request: AuthenticatedHtmxRequest, failed: tuple[int, RateForm] | None = None) -> dict:
    """Every line of the card, with an example render's cost; the failed edit keeps its value and error."""
    lines = list(Rate.objects.select_related("updated_by").order_by("model", "rate_key"))
    for line in lines:
        spec = MODELS.get(line.model)
        line.label = spec.label if spec else line.model
        line.example_seconds = spec.default_duration if spec else 1
        line.example = pricing.quantize(line.usd_per_second * line.example_seconds)
        line.error = ""
        line.value = line.usd_per_second.normalize()
        if failed and failed[0] == line.pk:
            line.error = " ".join(str(e) for e in failed[1].errors.get("usd_per_second", []))
            line.value = failed[1].data.get("usd_per_second", "")
    return {
        **_nav(
            access.money_scope_for_user(access.viewer(request), ""), here="rates"
        ),  # the money links of the active team
        "lines": lines,
        "can_edit": request.user.is_staff,
        "usd_per_credit": pricing.USD_PER_CREDIT,
    }


@login_required
@require_safe
def rates(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The rate card: model, resolution, dollars per second, where the figure came from, when last seen."""
    return render(request, "rates.html", _rates_context(request))


@login_required
@require_POST
def rate_set(request: AuthenticatedHtmxRequest, rate_id: int) -> HttpResponse:
    """Set a line of the rate card (staff only); the gateway no longer overrides it."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff edit the rate card.")
    rate = get_object_or_404(Rate, pk=rate_id)
    form = RateForm(request.POST)
    if not form.is_valid():
        context = _rates_context(request, failed=(rate.pk, form))
        if request.htmx:
            return render(request, "rates.html#rate-card", context)
        return render(request, "rates.html", context, status=400)
    rate = do_set_rate(rate, form.cleaned_data["usd_per_second"], by=request.user)
    messages.success(
        request, f"{rate.model} {rate.rate_key} is now {pricing.per_second(rate.usd_per_second)}."
    )
    if request.htmx:
        return render(request, "rates.html#rate-card", _rates_context(request))
    return redirect("rates")


# --- reconciliation -------------------------------------------------------------------------------------------


@login_required
@require_safe
@answers_400
def reconcile(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Renders billed beyond a tolerance of their estimate, and renders still holding money (team admins)."""
    scope = access.money_scope_for_user(access.viewer(request), request.GET.get("team", ""), Role.ADMIN)
    tolerance = params.parse_tolerance(request.GET.get("tolerance"))
    differs, more_differ = reports.mismatches(scope, tolerance)
    stuck, more_stuck = reports.stuck_holds(scope)
    context = {
        "tolerance": tolerance.normalize(),
        "differs": differs,
        "more_differ": more_differ,
        "stuck": stuck,
        "more_stuck": more_stuck,
        "limit": reports.RECONCILE_LIMIT,
        **_nav(scope, here="reconcile"),
    }
    return render(request, "reconcile.html", context)


urlpatterns: list = [
    path("spend/", spend, name="spend"),
    path("spend/ledger.csv", ledger_csv, name="ledger_csv"),
    path("budgets/", budgets, name="budgets"),
    path("budgets/", budgets, name="budget_set"),  # the same view: POST saves
    path("rates/", rates, name="rates"),
    path("rates/<int:rate_id>/", rate_set, name="rate_set"),
    path("reconcile/", reconcile, name="reconcile"),
]
