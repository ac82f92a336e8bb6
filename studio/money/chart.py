"""The spend-per-day chart's geometry: bars, gridlines and labels in SVG user units, drawn by the template.

Pure arithmetic over a month's totals (no database): `day_chart(month, per_day)`. Coordinates are pre-formatted
strings (two decimals, no exponent, no locale) so the template writes them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from studio import pricing

if TYPE_CHECKING:
    from studio.money.params import Month  # only its days: the geometry needs no database, even at import

ZERO = Decimal("0")
CHART_WIDTH, CHART_HEIGHT = 720, 220
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 56, 712, 12, 190  # room for dollar labels left, days below


@dataclass(frozen=True)
class Bar:
    """One day's bar of the chart, in SVG user units (pre-formatted for the template)."""

    day: date
    amount: Decimal
    x: str
    y: str
    width: str
    height: str

    @property
    def label(self) -> str:
        return f"{self.day:%a} {self.day.day} {self.day:%b}: {pricing.dollars(self.amount)}"


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class Chart:
    """Spend per day as bars, drawn by the template as inline SVG (no script, no CDN)."""

    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]  # horizontal gridlines with their dollar labels
    day_labels: list[tuple[str, str]]  # (x, text) under the axis
    baseline: str
    plot_left: int
    plot_right: int
    peak: Bar | None

    @property
    def days_with_spend(self) -> list[Bar]:
        return [bar for bar in self.bars if bar.amount > 0]


def svg_number(value) -> str:
    """An SVG coordinate (or a percentage of a bar): two decimals, no exponent, no locale."""
    return f"{Decimal(value).quantize(Decimal('0.01')):f}"


def nice_ceiling(amount: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `amount` (at least one cent)."""
    if amount <= 0:
        return Decimal(1)
    power = Decimal(10) ** (amount.adjusted())
    for step in (1, 2, Decimal("2.5"), 5):
        if amount <= power * step:
            return power * step
    return power * 10


def day_chart(month: Month, per_day: dict[date, Decimal]) -> Chart:
    """One bar per day of the month, scaled to the busiest day; gridlines at a quarter of a round maximum."""
    days = month.days
    top = nice_ceiling(max(per_day.values(), default=ZERO))
    plot_height = Decimal(PLOT_BOTTOM - PLOT_TOP)
    slot = Decimal(PLOT_RIGHT - PLOT_LEFT) / len(days)
    width = slot * Decimal("0.72")
    bars = []
    for index, day in enumerate(days):
        amount = per_day.get(day) or ZERO
        height = plot_height * amount / top
        bars.append(
            Bar(
                day=day,
                amount=amount,
                x=svg_number(PLOT_LEFT + slot * index + (slot - width) / 2),
                y=svg_number(PLOT_BOTTOM - height),
                width=svg_number(width),
                height=svg_number(height),
            )
        )
    ticks = [
        Tick(y=svg_number(PLOT_BOTTOM - plot_height * quarter / 4), label=pricing.dollars(top * quarter / 4))
        for quarter in range(5)
    ]
    labelled = sorted({1, 8, 15, 22, len(days)})
    day_labels = [(svg_number(PLOT_LEFT + slot * (d - 1) + slot / 2), str(d)) for d in labelled]
    spending = [bar for bar in bars if bar.amount > 0]
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=bars,
        ticks=ticks,
        day_labels=day_labels,
        baseline=svg_number(PLOT_BOTTOM),
        plot_left=PLOT_LEFT,
        plot_right=PLOT_RIGHT,
        peak=max(spending, key=lambda bar: bar.amount) if spending else None,
    )
