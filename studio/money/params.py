"""The money pages' query-string values: which month (`Month`, `parse_month`) and what tolerance (`parse_tolerance`).

A value that cannot be used is a `studio.params.BadValue`: the views answer 400 with its message, the `money`
command a CommandError. Months are UTC, like the budgets (`ledger.month_start`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from studio.money import ledger
from studio.params import BadValue

ZERO = Decimal("0")
MAX_TOLERANCE = Decimal("1000")
DEFAULT_TOLERANCE = Decimal("5")
MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class Month:
    """One calendar month in UTC: [start, end)."""

    year: int
    month: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next.start

    @property
    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def days(self) -> list[date]:
        count = calendar.monthrange(self.year, self.month)[1]
        return [date(self.year, self.month, day) for day in range(1, count + 1)]

    @property
    def param(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def label(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"

    @property
    def is_current(self) -> bool:
        return self.start == ledger.month_start()

    @classmethod
    def current(cls) -> Month:
        start = ledger.month_start()
        return cls(start.year, start.month)


def parse_month(value: str | None) -> Month:
    """`YYYY-MM` (or nothing: this month); anything else is a BadValue."""
    if not value:
        return Month.current()
    found = MONTH_RE.fullmatch(value)
    if not found or not 2000 <= int(found[1]) <= 9998 or not 1 <= int(found[2]) <= 12:
        raise BadValue("month must look like 2026-05 (a year from 2000 and a month from 01 to 12).")
    return Month(int(found[1]), int(found[2]))


def parse_tolerance(value: str | None) -> Decimal:
    """A tolerance in percent, 0 to 1000 (nothing: 5%); anything else is a BadValue."""
    if value is None or value == "":
        return DEFAULT_TOLERANCE
    try:
        tolerance = Decimal(value.strip().removesuffix("%"))
    except InvalidOperation:
        tolerance = Decimal("NaN")
    if not tolerance.is_finite() or not ZERO <= tolerance <= MAX_TOLERANCE:
        raise BadValue(f"tolerance must be a percentage from 0 to {MAX_TOLERANCE}, e.g. 5 or 2.5.")
    return tolerance
