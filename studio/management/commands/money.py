"""Money from the command line: the rate card, budgets, spend, reconciliation and the ledger export.

    python manage.py money rates [--set MODEL RATE_KEY USD_PER_SECOND]
    python manage.py money budget TEAM AMOUNT|none [--user NAME]
    python manage.py money spend TEAM [--month YYYY-MM] [--json]
    python manage.py money reconcile TEAM [--tolerance PERCENT] [--json]
    python manage.py money ledger TEAM [--month YYYY-MM]          (CSV on standard output)

An operator's tool: it sees every member's lines, as a team admin does on the pages.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.management.base import BaseCommand, CommandError

from studio import pricing
from studio.access import MoneyScope
from studio.actions.money import do_set_budget, do_set_rate
from studio.models import Budget, Membership, Rate, Team
from studio.money import ledger, params, reports
from studio.params import BadValue

OPERATOR = AnonymousUser()  # sees every member's lines; has no lines of its own


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.replace("$", "").replace(",", ""))
    except InvalidOperation as error:
        raise CommandError(
            f"{what} must be an amount in dollars, e.g. 25 or 0.23125 (got {text!r})."
        ) from error
    if not value.is_finite() or value < 0:
        raise CommandError(f"{what} must be a positive amount in dollars (got {text!r}).")
    return value


class Command(BaseCommand):
    help = "Rate card, budgets, spend, reconciliation and the ledger, for scripts and operators."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        rates = sub.add_parser("rates", help="show the rate card, or set one line of it")
        rates.add_argument("--set", nargs=3, metavar=("MODEL", "RATE_KEY", "USD_PER_SECOND"))
        budget = sub.add_parser("budget", help="set (or with 'none' remove) a monthly budget")
        budget.add_argument("team", help="team slug")
        budget.add_argument("amount", help="dollars per month, or none")
        budget.add_argument("--user", help="a member's budget instead of the team's")
        for name, text in (("spend", "spend this month"), ("reconcile", "bills that differ, stuck holds")):
            command = sub.add_parser(name, help=text)
            command.add_argument("team", help="team slug")
            command.add_argument("--json", action="store_true")
            if name == "spend":
                command.add_argument("--month", help="YYYY-MM (default: this month)")
            else:
                command.add_argument("--tolerance", help="percent (default 5)")
        export = sub.add_parser("ledger", help="the month's ledger as CSV")
        export.add_argument("team", help="team slug")
        export.add_argument("--month", help="YYYY-MM (default: this month)")

    def handle(self, *args, **options) -> None:
        getattr(self, f"do_{options['action']}")(options)

    # --- the actions ----------------------------------------------------------------------------------------

    def do_rates(self, options: dict) -> None:
        if options["set"]:
            model, key, usd = options["set"]
            rate = Rate.objects.filter(model=model, rate_key=key).first()
            if rate is None:
                known = ", ".join(f"{r.model} {r.rate_key}" for r in Rate.objects.all())
                raise CommandError(f"No rate card line {model} {key}; the lines are: {known}.")
            value = _decimal(usd, "The rate")
            if value <= 0:
                raise CommandError("The rate must be above $0 per second.")
            do_set_rate(rate, value, by=None)
        self.stdout.write("1 credit = $1. Dollars per second of footage:")
        for rate in Rate.objects.order_by("model", "rate_key"):
            seen = rate.last_seen_at.isoformat() if rate.last_seen_at else "never"
            self.stdout.write(
                f"  {rate.model:<11} {rate.rate_key:<6} {pricing.per_second(rate.usd_per_second):<12} "
                f"{rate.get_source_display():<25} gateway last showed it: {seen}"
            )

    def do_budget(self, options: dict) -> None:
        team = self._team(options["team"])
        user = self._member(team, options["user"]) if options["user"] else None
        amount = None if options["amount"].lower() == "none" else _decimal(options["amount"], "The budget")
        do_set_budget(team, user, amount, by=None)
        who = user.get_username() if user else f"team {team.name}"
        self.stdout.write(f"{who}: {'no budget' if amount is None else pricing.dollars(amount) + ' a month'}")

    def do_spend(self, options: dict) -> None:
        team = self._team(options["team"])
        month = self._parse(params.parse_month, options["month"])
        report = reports.spend_report(self._scope(team), month)
        statuses = [ledger.budget_status(b) for b in Budget.objects.filter(team=team).select_related("user")]
        if options["json"]:
            self.stdout.write(json.dumps(self._spend_dict(report, statuses), indent=2))
            return
        self.stdout.write(
            f"{team.name}, {month.label}: spent {pricing.dollars(report.spent)}, "
            f"held {pricing.dollars(report.held)}"
        )
        for title, lines in (
            ("per user", report.by_user),
            ("per model", report.by_model),
            ("per tag", report.by_tag),
        ):
            self.stdout.write(f"  {title}:")
            for line in lines:
                self.stdout.write(
                    f"    {line.label:<24} {line.renders:>5} render{'' if line.renders == 1 else 's'} "
                    f"{pricing.dollars(line.spent)}"
                )
        for status in statuses:
            self.stdout.write(
                f"  budget, {status.scope}: {pricing.dollars(status.limit)} — used {pricing.dollars(status.used)}, "
                f"held {pricing.dollars(status.held)}, left {pricing.dollars(status.left)}"
            )

    def do_reconcile(self, options: dict) -> None:
        team = self._team(options["team"])
        tolerance = self._parse(params.parse_tolerance, options["tolerance"])
        scope = self._scope(team)
        differing, _ = reports.mismatches(scope, tolerance)
        stuck, _ = reports.stuck_holds(scope)
        rows = {
            "beyond_tolerance": [
                {
                    "id": str(m.render.pk),
                    "estimate": str(m.estimate),
                    "billed": str(m.billed),
                    "difference": str(m.difference),
                    "percent": str(m.percent),
                }
                for m in differing
            ],
            "stuck_holding": [{"id": str(s.render.pk), "state": s.render.state} for s in stuck],
        }
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        self.stdout.write(f"Bills differing from the estimate by more than {tolerance}%: {len(differing)}")
        for row in rows["beyond_tolerance"]:
            self.stdout.write(
                f"  {row['id']}  estimate ${row['estimate']}  billed ${row['billed']}  ({row['percent']}%)"
            )
        self.stdout.write(f"Renders still holding money (submit unknown, stalled, unsettled): {len(stuck)}")
        for row in rows["stuck_holding"]:
            self.stdout.write(f"  {row['id']}  {row['state']}")

    def do_ledger(self, options: dict) -> None:
        team = self._team(options["team"])
        month = self._parse(params.parse_month, options["month"])
        writer = csv.writer(self.stdout)
        for row in reports.ledger_rows(self._scope(team), month):
            writer.writerow(row)

    # --- helpers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _team(slug: str) -> Team:
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            raise CommandError(f"No team with the slug {slug!r} (see: manage.py team list).")
        return team

    @staticmethod
    def _scope(team: Team) -> MoneyScope:
        """The operator's view of a team's money: every member's lines, as its admins see them."""
        return MoneyScope(team=team, viewer=OPERATOR, sees_everyone=True)

    @staticmethod
    def _member(team: Team, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not Membership.objects.filter(team=team, user=user).exists():
            raise CommandError(f"{username!r} is not a member of {team.name}.")
        return user

    @staticmethod
    def _parse(parser, value):
        try:
            return parser(value)
        except BadValue as error:
            raise CommandError(str(error)) from error

    @staticmethod
    def _spend_dict(report, statuses) -> dict:
        def usd(value) -> str:  # SQLite sums decimals as floats: back to the studio's four places
            return str(pricing.quantize(Decimal(str(value))))

        def lines(items):
            return [{"label": i.label, "renders": i.renders, "spent": usd(i.spent)} for i in items]

        return {
            "month": report.month.param,
            "spent": usd(report.spent),
            "held": usd(report.held),
            "per_user": lines(report.by_user),
            "per_model": lines(report.by_model),
            "per_tag": lines(report.by_tag),
            "budgets": [
                {
                    "scope": s.scope,
                    "limit": usd(s.limit),
                    "used": usd(s.used),
                    "held": usd(s.held),
                    "left": usd(s.left),
                }
                for s in statuses
            ],
        }
