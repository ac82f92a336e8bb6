"""Pure cost estimation: no database, no HTTP. Every estimate in the studio comes from `estimate()`.

Units: the gateway bills in credits; the studio assumes 1 credit = 1 US dollar (README "Money"), so amounts are
kept in dollars as `Decimal` with four places and shown rounded to the cent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from studio.catalog import SORA2, SORA2_PRO, get_model

USD_PER_CREDIT = Decimal("1")
PLACES = Decimal("0.0001")

# Dollars per second of footage. Sora 2: the page's $0.10/s. Sora 2 Pro 1080p: the page's own example,
# 1.85 credits for 8 s at 1080p = 0.23125/s. 720p: the page gives no figure; OpenAI prices its 720p Pro tier
# at 0.6x its higher-resolution tier, so 0.6 x 0.23125 = 0.13875/s.
RATE_CARD: dict[str, dict[str, Decimal]] = {
    SORA2: {"any": Decimal("0.10")},
    SORA2_PRO: {"1080p": Decimal("0.23125"), "720p": Decimal("0.13875")},
}


@dataclass(frozen=True)
class Estimate:
    """What a render will cost: the rate per second and the total, in dollars."""

    model: str
    seconds: int
    rate_key: str
    rate_per_second: Decimal
    total: Decimal


def quantize(amount: Decimal) -> Decimal:
    """Round an amount to the studio's money precision."""
    return amount.quantize(PLACES, rounding=ROUND_HALF_UP)


def estimate(model: str, params: dict, rate_card: dict[str, dict[str, Decimal]] = RATE_CARD) -> Estimate:
    """Cost of rendering `params` (duration_seconds and the model's size keys) on `model`."""
    spec = get_model(model)
    seconds = int(params.get("duration_seconds") or spec.default_duration)
    rate_key = spec.rate_key(params)
    rate = rate_card[model][rate_key]
    return Estimate(model, seconds, rate_key, rate, quantize(rate * seconds))


def credits_to_usd(credits: Decimal | float | str) -> Decimal:
    """Dollars for an amount of gateway credits."""
    return quantize(Decimal(str(credits)) * USD_PER_CREDIT)


def cancel_cost(quote: Estimate, progress: float, started: bool) -> Decimal:
    """What cancelling costs now: free before the gateway starts, else the seconds rendered so far.

    The gateway bills partial seconds of a running task; we round up to whole seconds, at least one,
    because that is the most it can bill for the progress we have seen.
    """
    if not started:
        return Decimal("0")
    seconds = min(quote.seconds, max(1, math.ceil(max(0.0, min(progress, 1.0)) * quote.seconds)))
    return quantize(quote.rate_per_second * seconds)


def per_second(rate: Decimal) -> str:
    """A rate as shown to people: "$0.10/s", "$0.23125/s" (cents at least, no trailing zeros past them)."""
    text = f"{rate.normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}/s"


def dollars(amount: Decimal | None) -> str:
    """An amount as shown to people: "$1.85"."""
    if amount is None:
        return "—"
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"
