"""The two pure functions the money and the polling rest on: the poll cadence and the cost estimate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from studio import cadence, pricing
from studio.catalog import SORA2, SORA2_PRO

HOUR = 3600.0


# --- cadence -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "delay"),
    [
        (0, 2.0),  # the Pro page: every 2 s for the first 90 s
        (89, 2.0),
        (89.99, 2.0),
        (90, 5.0),  # then every 5 s up to 240 s
        (239, 5.0),
        (240, 10.0),  # the page is silent after 240 s: the studio backs off
        (299, 10.0),
        (300, 20.0),
        (419, 20.0),
        (420, 30.0),
        (839, 30.0),
        (840, 60.0),
        (3000, 60.0),
    ],
)
def test_poll_delay_follows_the_documented_cadence_then_backs_off(elapsed, delay):
    assert cadence.poll_delay(elapsed, HOUR) == delay


def test_poll_delay_never_shrinks_as_time_passes():
    delays = [cadence.poll_delay(t, HOUR) for t in range(0, 3500, 5)]
    assert delays == sorted(delays)


@pytest.mark.parametrize("elapsed", [HOUR, HOUR + 0.001, HOUR * 5])
def test_poll_delay_is_none_at_and_after_the_deadline(elapsed):
    assert cadence.poll_delay(elapsed, HOUR) is None


@pytest.mark.parametrize(("elapsed", "deadline"), [(89, 90), (100, 101.5), (3590, HOUR), (250, 255)])
def test_the_next_poll_never_lands_past_the_deadline(elapsed, deadline):
    delay = cadence.poll_delay(elapsed, deadline)
    assert delay == pytest.approx(deadline - elapsed)
    assert elapsed + delay <= deadline


def test_the_last_poll_before_the_deadline_is_exactly_at_it():
    elapsed, polls = 0.0, 0
    while (delay := cadence.poll_delay(elapsed, 1000)) is not None:
        elapsed += delay
        polls += 1
    assert elapsed == 1000
    # 45 polls in the first 90 s, 30 up to 240 s, 6 at 10 s, 6 at 20 s, 14 at 30 s up to 840 s,
    # then 900 s, 960 s and a last, shorter wait that lands on the deadline itself.
    assert polls == 45 + 30 + 6 + 6 + 14 + 3


# --- pricing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "total"), [(5, "0.50"), (10, "1.00"), (15, "1.50")])
def test_sora2_costs_ten_cents_a_second_at_either_size(seconds, total):
    for size in ("1280x720", "1920x1080"):
        quote = pricing.estimate(SORA2, {"duration_seconds": seconds, "size": size})
        assert quote.total == Decimal(total)
        assert quote.rate_per_second == Decimal("0.10")
        assert quote.seconds == seconds


def test_sora2_pro_8_seconds_at_1080p_costs_what_its_page_says():
    quote = pricing.estimate(
        SORA2_PRO, {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9"}
    )
    assert quote.total == Decimal("1.85")
    assert quote.rate_key == "1080p"


def test_sora2_pro_720p_is_priced_at_six_tenths_of_1080p():
    quote = pricing.estimate(SORA2_PRO, {"duration_seconds": 10, "resolution": "720p"})
    assert (
        quote.rate_per_second == Decimal("0.13875") == Decimal("0.6") * pricing.RATE_CARD[SORA2_PRO]["1080p"]
    )
    assert quote.total == Decimal("1.3875")


def test_an_estimate_without_parameters_uses_the_models_defaults():
    assert pricing.estimate(SORA2, {}).total == Decimal("0.50")  # 5 s
    assert pricing.estimate(SORA2_PRO, {}).total == Decimal("1.85")  # 8 s at 1080p


def test_estimates_are_decimals_with_four_places():
    total = pricing.estimate(SORA2_PRO, {"duration_seconds": 7, "resolution": "720p"}).total
    assert isinstance(total, Decimal)
    assert total == Decimal("0.9713")  # 0.97125 rounded half up
    assert total.as_tuple().exponent == -4


def test_gateway_credits_are_dollars_one_to_one():
    assert pricing.credits_to_usd(1.85) == Decimal("1.85")
    assert pricing.credits_to_usd("0.13875") == Decimal("0.1388")
    assert pricing.credits_to_usd(Decimal("0")) == Decimal("0")


PRO_10S = pricing.estimate(SORA2_PRO, {"duration_seconds": 10, "resolution": "1080p"})
SORA2_5S = pricing.estimate(SORA2, {"duration_seconds": 5})


def test_cancelling_before_the_gateway_starts_is_free():
    assert pricing.cancel_cost(PRO_10S, 0.0, started=False) == 0
    assert pricing.cancel_cost(PRO_10S, 0.5, started=False) == 0


@pytest.mark.parametrize(
    ("progress", "seconds"),
    [(0.0, 1), (0.01, 1), (0.2, 2), (0.21, 3), (0.6, 6), (0.99, 10)],
)
def test_cancelling_a_running_render_bills_the_seconds_rendered_rounded_up(progress, seconds):
    assert pricing.cancel_cost(PRO_10S, progress, started=True) == pricing.quantize(
        PRO_10S.rate_per_second * seconds
    )


def test_cancelling_at_integer_percentages_rounds_up_exactly():
    """Progress arrives as a whole percentage: 60 % of 5 s is 3 s, not 4 from a float's last bit."""
    for percent in range(101):
        cost = pricing.cancel_cost(SORA2_5S, percent / 100, started=True)
        whole_seconds = max(1, -(-percent * 5 // 100))
        assert cost == Decimal("0.10") * whole_seconds


@pytest.mark.parametrize("progress", [1.0, 1.5, 100.0])
def test_a_cancel_never_costs_more_than_the_full_estimate(progress):
    assert pricing.cancel_cost(PRO_10S, progress, started=True) == PRO_10S.total


def test_a_negative_progress_bills_the_minimum_second():
    assert pricing.cancel_cost(SORA2_5S, -0.5, started=True) == Decimal("0.10")


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("1.85"), "$1.85"),
        (Decimal("0.5"), "$0.50"),
        (Decimal("0"), "$0.00"),
        (Decimal("1.3875"), "$1.39"),
        (Decimal("0.125"), "$0.13"),  # half up, not banker's rounding
        (Decimal("1234.5"), "$1234.50"),
        (None, "—"),
    ],
)
def test_dollars_shows_amounts_to_the_cent(amount, shown):
    assert pricing.dollars(amount) == shown
