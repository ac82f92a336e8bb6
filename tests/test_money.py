"""Money: every way a render's hold ends, the append-only ledger, budgets and the rate card that learns.

Renders go through the real lifecycle against emulators that bill 10 % over the card (`bill_factor=1.1`), so a
settle that followed the estimate instead of the bill would show. Each task runs twice, as a redelivering broker
would, and every test states the render's whole ledger: (kind, amount) in the order written, never two outcomes.
"""

from __future__ import annotations

import dataclasses
import io
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from PIL import Image

from studio import pricing
from studio.actions.renders import do_cancel_render, do_submit_render
from studio.forms import RenderForm
from studio.gateway.client import GatewayClient
from studio.lifecycle.download import download_step
from studio.lifecycle.poll import poll_step
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import sweep
from studio.models import (
    AT_GATEWAY,
    Budget,
    LedgerEntry,
    LedgerKind,
    Membership,
    Rate,
    RateSource,
    Render,
    Role,
    State,
    Team,
)
from studio.money import ledger
from tests.conftest import fresh, poll_until

HOLD, SETTLE, RELEASE = LedgerKind.HOLD, LedgerKind.SETTLE, LedgerKind.RELEASE
SORA2 = {
    "model": "sora2",
    "prompt": "A red apple rolls across a wooden table",
    "duration_seconds": "5",
    "size": "1280x720",
}  # $0.50 on the card
PRO = {
    "model": "sora-2-pro",
    "prompt": "A lighthouse at dusk, waves below",
    "duration_seconds": "2",
    "resolution": "720p",
    "aspect_ratio": "1:1",
}  # 2 s x $0.13875 = $0.2775 on the card
PRO_PARAMS = {"duration_seconds": 2, "resolution": "720p", "aspect_ratio": "1:1"}


# --- fixtures and helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick(settings):
    """A poller task run by `queue.run` gives up after seconds, not the production 15."""
    settings.STUDIO_POLLER_RUN_SECONDS = 5


def _billing_emulator(tmp_path_factory, name: str, speed: float):
    from studio.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(speed=speed, fps=8, bill_factor=1.1, data_dir=tmp_path_factory.mktemp(name))
    return Emulator(config).start()


@pytest.fixture(scope="module")
def dear_emulator(tmp_path_factory):
    """A fast gateway whose live rate is 10 % above the studio's card."""
    emu = _billing_emulator(tmp_path_factory, "dear-emulator", speed=40.0)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def slow_dear_emulator(tmp_path_factory):
    """The same, slow enough to catch a task while it is queued (~0.5 s) or running (~2 s)."""
    emu = _billing_emulator(tmp_path_factory, "slow-dear-emulator", speed=4.0)
    yield emu
    emu.stop()


def _point_at(emulator, settings):
    emulator.clear_faults()
    settings.BYTESPIKE_BASE_URL = emulator.base_url


@pytest.fixture
def dear(gateway, dear_emulator, settings):
    """The studio pointed at the dear gateway (the `gateway` fixture's media dir and poll scale stay)."""
    _point_at(dear_emulator, settings)
    yield dear_emulator
    dear_emulator.clear_faults()


@pytest.fixture
def slow_dear(gateway, slow_dear_emulator, settings):
    _point_at(slow_dear_emulator, settings)
    yield slow_dear_emulator
    slow_dear_emulator.clear_faults()


def form_for(**fields) -> RenderForm:
    form = RenderForm({**SORA2, **fields})
    assert form.is_valid(), form.errors
    return form


def submit(user, **fields) -> Render:
    """Create a render through the form and `do_submit_render`, as the page does."""
    return do_submit_render(user, form_for(**fields).order())


def entries(render: Render) -> list[tuple[str, Decimal]]:
    """The render's ledger as (kind, amount), in the order written."""
    return [(e.kind, e.amount) for e in LedgerEntry.objects.filter(render=render).order_by("id")]


def billed_by(emulator, render: Render, field: str = "credits") -> Decimal:
    """What the emulator says it billed for the render's task, in dollars (1 credit = $1)."""
    return pricing.credits_to_usd(emulator.task(render.gateway_task_id)[field])


def sent(user, api, **fields) -> Render:
    """A render the gateway accepted; its submit task ran twice by hand (the queued one is dropped)."""
    render = submit(user, **fields)
    assert [submit_step(render.pk, api) for _ in range(2)] == ["submitted", "skipped"]
    return fresh(render)


def budget(team, usd: str, user=None) -> Budget:
    return Budget.objects.create(team=team, user=user, monthly_usd=Decimal(usd))


def spent_earlier(team, user, usd: str, when=None, state: str = State.COMPLETED) -> Render:
    """A render that held `usd` at `when` (default: now), written straight into the ledger; billed and
    settled then too if it completed, still holding if not."""
    when = when or timezone.now()
    amount = Decimal(usd)
    render = Render.objects.create(
        user=user,
        team=team,
        model="sora2",
        prompt="An earlier render",
        params={"duration_seconds": 5, "size": "1280x720"},
        estimated_cost=amount,
        rate_per_second=Decimal("0.10"),
        state=state,
        billed_cost=amount if state == State.COMPLETED else None,
        created_at=when,
        finished_at=when if state in (State.COMPLETED, State.STALLED) else None,
    )
    for kind in (HOLD, SETTLE) if state == State.COMPLETED else (HOLD,):
        LedgerEntry.objects.create(
            render=render, kind=kind, amount=amount, team=team, user=user, model="sora2", created_at=when
        )
    return render


def pro_line() -> tuple[Decimal, str | None]:
    """(rate, source) of the rate card's Sora 2 Pro 720p line, the live rate PRO renders teach (no source while
    the built-in default stands: a transactional test's flush removes the seeded lines)."""
    rate = Rate.objects.filter(model="sora-2-pro", rate_key="720p").first()
    return (rate.usd_per_second, rate.source) if rate else (ledger.rate_card()["sora-2-pro"]["720p"], None)


def teach_the_pro_line(usd: Decimal) -> tuple[Decimal, str | None]:
    """As if the gateway had since shown another rate: learning from a stale estimate would then show."""
    Rate.objects.update_or_create(
        model="sora-2-pro", rate_key="720p", defaults={"usd_per_second": usd, "source": RateSource.GATEWAY}
    )
    return pro_line()


def status_of(budget_row: Budget) -> tuple[Decimal, Decimal, Decimal]:
    """(used, held, left) of a budget this month."""
    status = ledger.budget_status(budget_row)
    return status.used, status.held, status.left


# --- every way a hold ends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [SORA2, PRO], ids=["sora2", "sora-2-pro"])
def test_a_completed_render_settles_what_the_gateway_billed_not_the_estimate(
    dear, owner, team, queue, fields
):
    team_budget = budget(team, "100.00")
    render = submit(owner, **fields)
    estimate = render.estimated_cost
    assert estimate == pricing.estimate(fields["model"], render.params).total
    assert entries(render) == [(HOLD, estimate)]
    assert status_of(team_budget) == (0, estimate, 100 - estimate)  # held until it settles

    queue.run(twice=True)

    render = fresh(render)
    billed = billed_by(dear, render)
    assert render.state == State.COMPLETED, render.error
    assert billed == pricing.quantize(estimate * Decimal("1.1"))  # the live rate is 10 % over the card
    assert render.billed_cost == billed
    assert entries(render) == [(HOLD, estimate), (SETTLE, billed)]
    assert status_of(team_budget) == (billed, 0, 100 - billed)
    assert ledger.settle(render.pk) == "already"
    assert sweep()["settled"] == 0
    assert entries(render) == [(HOLD, estimate), (SETTLE, billed)]


@pytest.mark.parametrize("fields", [SORA2, PRO], ids=["sora2", "sora-2-pro"])
def test_cancelling_a_running_render_settles_the_seconds_billed(slow_dear, owner, team, queue, api, fields):
    render = poll_until(sent(owner, api, **fields), api, lambda r: r.state == State.RUNNING)
    card_before = pro_line()

    do_cancel_render(render)
    steps = [poll_step(render.pk, api) for _ in range(2)]

    render = fresh(render)
    billed = billed_by(slow_dear, render, "cancel_credits")
    assert steps == ["cancelled", "skipped"]
    assert render.state == State.CANCELLED
    assert 0 < billed < render.estimated_cost
    assert entries(render) == [(HOLD, render.estimated_cost), (SETTLE, billed)]
    assert ledger.settle(render.pk) == "already"
    assert pro_line() == card_before  # a partial bill teaches the live rate nothing


def test_cancelling_a_queued_render_releases_its_hold(slow_dear, owner, team, queue, api):
    render = sent(owner, api)
    assert render.state == State.QUEUED

    do_cancel_render(render)
    steps = [poll_step(render.pk, api) for _ in range(2)]

    assert steps == ["cancelled", "skipped"]
    assert fresh(render).state == State.CANCELLED
    assert entries(render) == [(HOLD, Decimal("0.50")), (RELEASE, 0)]
    assert ledger.settle(render.pk) == "already"


def test_cancelling_before_submission_releases_its_hold_and_sends_nothing(dear, owner, team, queue):
    before = dear.submissions
    render = submit(owner)

    do_cancel_render(render)
    do_cancel_render(fresh(render))
    queue.run(twice=True)

    assert fresh(render).state == State.CANCELLED
    assert entries(render) == [(HOLD, Decimal("0.50")), (RELEASE, 0)]
    assert dear.submissions == before


def test_a_task_that_fails_at_the_gateway_releases_its_hold(dear, owner, team, queue):
    dear.add_fault("task", message="The model could not follow the prompt.")
    render = submit(owner)

    queue.run(twice=True)

    assert fresh(render).state == State.FAILED
    assert entries(render) == [(HOLD, Decimal("0.50")), (RELEASE, 0)]


@pytest.mark.parametrize(
    ("fault", "prompt", "code"),
    [
        (None, "A scene full of gore", "prompt_blocked"),  # 451 from the emulator's word list
        ({"status": 400}, SORA2["prompt"], "bad_request"),
        ({"status": 402}, SORA2["prompt"], "wallet_empty"),
    ],
    ids=["blocked-451", "bad-request-400", "wallet-empty-402"],
)
def test_a_submission_the_gateway_refuses_releases_its_hold(dear, owner, team, queue, fault, prompt, code):
    if fault:
        dear.add_fault("submit", **fault)
    render = submit(owner, prompt=prompt)

    queue.run(twice=True)

    render = fresh(render)
    assert render.error_code == code
    assert entries(render) == [(HOLD, Decimal("0.50")), (RELEASE, 0)]


def test_a_submission_that_keeps_failing_with_5xx_holds_until_it_gives_up_then_releases(
    dear, owner, team, queue, api, settings
):
    settings.STUDIO_SUBMIT_MAX_ATTEMPTS = 2
    dear.add_fault("submit", times=2, status=503)
    render = submit(owner)

    assert [submit_step(render.pk, api) for _ in range(2)] == ["retry", "skipped"]
    assert entries(render) == [(HOLD, Decimal("0.50"))]  # waiting to retry: still holding
    Render.objects.filter(pk=render.pk).update(next_attempt_at=timezone.now())
    assert [submit_step(render.pk, api) for _ in range(2)] == ["failed", "skipped"]

    assert fresh(render).state == State.FAILED
    assert entries(render) == [(HOLD, Decimal("0.50")), (RELEASE, 0)]


def test_a_submission_with_an_unknown_outcome_keeps_holding(dear, owner, team, queue):
    team_budget = budget(team, "5.00")
    dear.add_fault("submit", kind="drop")
    render = submit(owner)

    queue.run(twice=True)

    assert fresh(render).state == State.SUBMIT_UNKNOWN
    assert ledger.settle(render.pk) == "holding"
    assert sweep()["settled"] == 0
    assert entries(render) == [(HOLD, Decimal("0.50"))]  # the gateway may yet bill it
    assert status_of(team_budget) == (0, Decimal("0.50"), Decimal("4.50"))


def test_a_stalled_render_keeps_holding(dear, owner, team, queue, api, settings):
    settings.STUDIO_STALL_AFTER_SECONDS = 2  # 40 ms at the test's poll scale
    render = sent(owner, api)
    time.sleep(0.06)

    assert [poll_step(render.pk, api) for _ in range(2)] == ["stalled", "skipped"]

    assert fresh(render).state == State.STALLED
    assert ledger.settle(render.pk) == "holding"
    assert sweep()["settled"] == 0
    assert entries(render) == [(HOLD, Decimal("0.50"))]


def test_a_render_billed_but_expired_before_its_download_settles_the_bill(dear, owner, team, queue, api):
    render = sent(owner, api)
    dear.expire_results()
    render = poll_until(render, api, lambda r: r.state not in AT_GATEWAY)
    assert render.state == State.DOWNLOADING
    assert entries(render) == [(HOLD, Decimal("0.50"))]  # billed, not yet settled: the render has not ended

    assert [download_step(render.pk) for _ in range(2)] == ["expired", "skipped"]

    assert fresh(render).state == State.EXPIRED
    assert entries(render) == [(HOLD, Decimal("0.50")), (SETTLE, billed_by(dear, render))]


def test_a_render_billed_whose_download_failed_settles_the_bill(dear, owner, team, queue, api):
    render = poll_until(sent(owner, api), api, lambda r: r.state not in AT_GATEWAY)
    dear.add_fault("result", kind="redirect", location="http://cdn.example.com/clip.mp4")

    assert [download_step(render.pk) for _ in range(2)] == ["failed", "skipped"]

    assert fresh(render).state == State.FAILED
    assert entries(render) == [(HOLD, Decimal("0.50")), (SETTLE, billed_by(dear, render))]


class Unreported(GatewayClient):
    """A gateway whose poll reports no bill (Sora 2's poll does not document `credits`)."""

    def poll(self, model, task_id):
        return dataclasses.replace(super().poll(model, task_id), billed_credits=None)


@pytest.mark.parametrize("fields", [SORA2, PRO], ids=["sora2", "sora-2-pro"])
def test_a_completed_render_whose_bill_was_not_reported_settles_the_estimate(
    dear, owner, team, queue, api, fields
):
    """A clip the gateway made was billed, never free."""
    render = sent(owner, api, **fields)
    learned_since = teach_the_pro_line(Decimal("0.2"))  # other renders taught it since this one was quoted
    with Unreported() as client:
        render = poll_until(render, client, lambda r: r.state not in AT_GATEWAY)

    assert [download_step(render.pk) for _ in range(2)] == ["completed", "skipped"]

    render = fresh(render)
    assert render.state == State.COMPLETED and render.billed_cost is None
    assert entries(render) == [(HOLD, render.estimated_cost), (SETTLE, render.estimated_cost)]
    assert LedgerEntry.objects.get(render=render, kind=SETTLE).note == ledger.UNREPORTED
    assert pro_line() == learned_since  # an estimate teaches the live rate nothing


@pytest.mark.parametrize("ending", [State.EXPIRED, State.FAILED], ids=["expired", "download-failed-for-good"])
def test_a_clip_made_but_never_downloaded_settles_the_estimate_when_no_bill_was_reported(
    dear, owner, team, queue, api, ending
):
    """The README: a render that expired before its download was billed all the same; so was one whose download
    failed for good. With no bill reported, the estimate is settled, as for a completed render."""
    render = sent(owner, api)
    if ending == State.EXPIRED:
        dear.expire_results()
    with Unreported() as client:
        render = poll_until(render, client, lambda r: r.state not in AT_GATEWAY)
    if ending == State.FAILED:
        dear.add_fault("result", kind="redirect", location="http://cdn.example.com/clip.mp4")
    assert render.state == State.DOWNLOADING

    assert [download_step(render.pk) for _ in range(2)] == [str(ending), "skipped"]

    render = fresh(render)
    assert render.state == ending and render.billed_cost is None
    assert entries(render) == [(HOLD, Decimal("0.50")), (SETTLE, Decimal("0.50"))]
    assert LedgerEntry.objects.get(render=render, kind=SETTLE).note == ledger.UNREPORTED


def test_a_crash_between_the_bill_and_the_settle_is_settled_once_by_the_sweep(
    dear, owner, team, queue, monkeypatch
):
    real_settle = ledger.settle
    crashes = []

    def crash_once(render_id):
        if not crashes:
            crashes.append(render_id)
            raise RuntimeError("the worker died before writing the ledger")
        return real_settle(render_id)

    monkeypatch.setattr(ledger, "settle", crash_once)
    render = submit(owner)

    queue.run(twice=True)

    render = fresh(render)
    assert render.state == State.COMPLETED
    assert crashes == [render.pk]
    assert render.billed_cost == billed_by(dear, render)
    assert entries(render) == [(HOLD, Decimal("0.50"))]  # billed, but no outcome yet

    assert sweep()["settled"] == 1
    assert sweep()["settled"] == 0

    assert entries(render) == [(HOLD, Decimal("0.50")), (SETTLE, render.billed_cost)]
    assert ledger.settle(render.pk) == "already"


def test_a_render_without_a_hold_is_never_settled(db, owner):
    bare = Render.objects.create(
        user=owner,
        model="sora2",
        prompt="Made before budgets existed",
        params={"duration_seconds": 5},
        estimated_cost=Decimal("0.50"),
        rate_per_second=Decimal("0.10"),
        state=State.FAILED,
        finished_at=timezone.now(),
    )

    assert ledger.settle(bare.pk) == "no-hold"
    assert ledger.settle_missing() == 0
    assert entries(bare) == []


# --- the ledger is append-only -----------------------------------------------------------------------------


@pytest.fixture
def held(db, owner, team) -> Render:
    return submit(owner)


def test_a_ledger_entry_cannot_be_edited(held):
    entry = LedgerEntry.objects.get(render=held)
    entry.amount = Decimal("0")

    with pytest.raises(ValueError, match="append-only"):
        entry.save()

    assert entries(held) == [(HOLD, Decimal("0.50"))]


def test_a_ledger_entry_cannot_be_deleted(held):
    with pytest.raises(ValueError, match="append-only"):
        LedgerEntry.objects.get(render=held).delete()
    with pytest.raises(ProtectedError):
        held.delete()  # nor taken away with its render

    assert entries(held) == [(HOLD, Decimal("0.50"))]


def test_bulk_updates_and_deletes_cannot_touch_the_ledger(held):
    with pytest.raises(ValueError, match="append-only"):
        LedgerEntry.objects.filter(render=held).update(amount=Decimal("0"))
    with pytest.raises(ValueError, match="append-only"):
        LedgerEntry.objects.filter(render=held).delete()

    assert entries(held) == [(HOLD, Decimal("0.50"))]


def _entry(render: Render, kind: str, amount: str = "0.50") -> LedgerEntry:
    return LedgerEntry.objects.create(
        render=render,
        kind=kind,
        amount=Decimal(amount),
        team=render.team,
        user=render.user,
        model=render.model,
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [(None, HOLD), (SETTLE, SETTLE), (RELEASE, RELEASE), (SETTLE, RELEASE), (RELEASE, SETTLE)],
    ids=["second-hold", "second-settle", "second-release", "release-after-settle", "settle-after-release"],
)
def test_the_database_refuses_a_second_entry_of_a_kind_or_a_second_outcome(held, first, second):
    if first:
        _entry(held, first)
    written = entries(held)

    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(held, second)

    assert entries(held) == written


def test_the_database_refuses_a_negative_amount(held):
    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(held, SETTLE, "-0.01")


# --- budgets -------------------------------------------------------------------------------------------------


def test_a_submit_over_the_team_budget_is_refused_before_anything_is_sent(gateway, owner, team, queue):
    team_budget = budget(team, "1.20")
    first, second = submit(owner), submit(owner, prompt="A second apple")
    queue.pending()  # their submissions are not the point
    before = gateway.submissions

    with pytest.raises(ledger.BudgetExceeded) as refused:
        submit(owner, prompt="A third apple")

    assert refused.value.message == (
        "This render would cost $0.50, but only $0.20 is left of team Acme's $1.20 monthly budget "
        "($0.00 spent, $1.00 held by renders in progress)."
    )
    assert list(Render.objects.order_by("created_at")) == [first, second]
    assert LedgerEntry.objects.count() == 2
    assert queue.run() == []
    assert gateway.submissions == before
    assert status_of(team_budget) == (0, Decimal("1.00"), Decimal("0.20"))


def test_a_submit_over_a_members_budget_is_refused_while_teammates_go_on(
    gateway, owner, teammate, team, queue
):
    budget(team, "100.00")
    budget(team, "0.60", user=owner)
    submit(owner)

    with pytest.raises(ledger.BudgetExceeded) as refused:
        submit(owner, prompt="One more")

    assert "only $0.10 is left of your $0.60 monthly budget" in refused.value.message
    assert Render.objects.filter(user=owner).count() == 1
    assert submit(teammate).team == team  # his own budget is not olivia's
    assert queue.names() == ["submit_render", "submit_render"]


def test_a_render_exactly_filling_the_budget_is_accepted(db, owner, team):
    budget(team, "1.00")
    spent_earlier(team, owner, "0.50")

    render = submit(owner)

    assert entries(render) == [(HOLD, Decimal("0.50"))]
    with pytest.raises(ledger.BudgetExceeded, match=r"only \$0\.00 is left"):
        submit(owner, prompt="Not one cent more")


def test_held_money_counts_against_the_budget_until_released(gateway, owner, team, queue):
    team_budget = budget(team, "1.00")
    first, _ = submit(owner), submit(owner, prompt="A second apple")
    with pytest.raises(ledger.BudgetExceeded):
        submit(owner, prompt="A third apple")

    do_cancel_render(first)  # nothing billed: its hold is released

    assert status_of(team_budget) == (0, Decimal("0.50"), Decimal("0.50"))
    third = submit(owner, prompt="A third apple")
    assert entries(third) == [(HOLD, Decimal("0.50"))]


def test_renders_outside_a_team_are_not_limited_by_its_budgets(db, owner, team, make_user):
    budget(team, "0.00")
    loner = make_user("lou")

    render = submit(loner)

    assert render.team is None
    assert entries(render) == [(HOLD, Decimal("0.50"))]
    with pytest.raises(ledger.BudgetExceeded):
        submit(owner)


@pytest.mark.parametrize(
    ("months_ago", "accepted"), [(0, False), (1, True)], ids=["this-month", "last-month"]
)
def test_a_new_month_starts_the_budget_afresh(db, owner, team, months_ago, accepted):
    team_budget = budget(team, "1.00")
    when = timezone.now() if months_ago == 0 else ledger.month_start() - timedelta(days=1)
    spent_earlier(team, owner, "1.00", when=when)

    if accepted:
        assert status_of(team_budget) == (0, 0, Decimal("1.00"))
        assert ledger.budget_status(team_budget, since=ledger.month_start(when)).used == Decimal("1.00")
        assert entries(submit(owner)) == [(HOLD, Decimal("0.50"))]
    else:
        assert status_of(team_budget) == (Decimal("1.00"), 0, 0)
        with pytest.raises(ledger.BudgetExceeded, match=r"\$1\.00 spent"):
            submit(owner)


@pytest.mark.parametrize(
    ("state", "held"), [(State.RUNNING, "0.80"), (State.STALLED, "0")], ids=["in-flight", "stuck"]
)
def test_last_months_hold_counts_this_month_while_its_render_is_in_flight(db, owner, team, state, held):
    """A render submitted on the 31st settles in the new month: its hold must not vanish at midnight."""
    team_budget = budget(team, "1.00")
    spent_earlier(team, owner, "0.80", when=ledger.month_start() - timedelta(hours=1), state=state)

    assert status_of(team_budget) == (0, Decimal(held), 1 - Decimal(held))
    if state == State.RUNNING:
        with pytest.raises(ledger.BudgetExceeded, match=r"only \$0\.20 is left"):
            submit(owner)
    else:  # a stuck render from last month is reported for an operator, not carried into every new month
        assert entries(submit(owner)) == [(HOLD, Decimal("0.50"))]


def test_month_start_is_the_first_instant_of_the_month():
    now = timezone.now().replace(year=2026, month=3, day=17, hour=13, minute=5)
    assert ledger.month_start(now) == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def test_a_refused_submit_leaves_no_file_behind(db, owner, team, settings):
    budget(team, "0.00")
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), "red").save(buf, "PNG")
    form = RenderForm(SORA2, {"init_image": SimpleUploadedFile("apple.png", buf.getvalue(), "image/png")})
    assert form.is_valid(), form.errors

    with pytest.raises(ledger.BudgetExceeded):
        do_submit_render(owner, form.order())

    assert Render.objects.count() == 0
    renders = Path(settings.MEDIA_ROOT) / "renders"
    assert not renders.exists() or list(renders.iterdir()) == []


def test_submitting_into_another_team_is_held_against_that_teams_budget(db, owner, team):
    other = Team.objects.create(name="Bolt", slug="bolt")
    Membership.objects.create(team=other, user=owner, role=Role.MEMBER)
    budget(other, "0.20")

    with pytest.raises(ledger.BudgetExceeded, match="team Bolt's"):
        do_submit_render(owner, form_for().order(), team=other)


# --- the rate card -------------------------------------------------------------------------------------------


def test_the_estimate_and_the_hold_come_from_the_rate_card_in_the_database(db, owner, team):
    Rate.objects.update_or_create(
        model="sora2",
        rate_key="any",
        defaults={"usd_per_second": Decimal("0.12"), "source": RateSource.ADMIN},
    )

    quote = ledger.quote("sora2", {"duration_seconds": 5, "size": "1280x720"})
    render = submit(owner)

    assert (quote.rate_per_second, quote.total) == (Decimal("0.12"), Decimal("0.60"))
    assert (render.rate_per_second, render.estimated_cost) == (Decimal("0.12"), Decimal("0.60"))
    assert entries(render) == [(HOLD, Decimal("0.60"))]


def test_a_completed_pro_render_teaches_the_card_the_live_rate(dear, owner, team, queue):
    started = timezone.now()
    render = submit(owner, **PRO)

    queue.run(twice=True)

    render = fresh(render)
    rate = Rate.objects.get(model="sora-2-pro", rate_key="720p")
    assert render.state == State.COMPLETED, render.error
    assert rate.usd_per_second == render.billed_cost / 2  # dollars per second of what it billed
    assert rate.source == RateSource.GATEWAY
    assert started <= rate.last_seen_at <= timezone.now()
    quote = ledger.quote("sora-2-pro", PRO_PARAMS)
    assert quote.rate_per_second == rate.usd_per_second
    assert quote.total == render.billed_cost  # the next estimate is what the gateway bills now
    assert ledger.rate_card()["sora-2-pro"]["1080p"] == Decimal("0.23125")  # other lines untouched


def test_learning_a_bill_at_the_cards_own_rate_keeps_the_card_exact(gateway, owner, team, queue):
    """The default gateway bills exactly the card: learning from it must not round the rate."""
    render = submit(owner, **PRO)

    queue.run(twice=True)

    render = fresh(render)
    assert render.billed_cost == render.estimated_cost == Decimal("0.2775")
    assert ledger.rate_card()["sora-2-pro"]["720p"] == Decimal("0.13875")
    assert ledger.quote("sora-2-pro", {**PRO_PARAMS, "duration_seconds": 20}).total == Decimal("2.7750")


def test_an_admins_rate_is_not_overwritten_but_its_last_sighting_is_recorded(dear, owner, team, queue):
    Rate.objects.update_or_create(
        model="sora-2-pro",
        rate_key="720p",
        defaults={"usd_per_second": Decimal("0.2"), "source": RateSource.ADMIN, "last_seen_at": None},
    )
    started = timezone.now()
    render = submit(owner, **PRO)
    assert render.estimated_cost == Decimal("0.40")

    queue.run(twice=True)

    rate = Rate.objects.get(model="sora-2-pro", rate_key="720p")
    assert fresh(render).state == State.COMPLETED
    assert (rate.usd_per_second, rate.source) == (Decimal("0.2"), RateSource.ADMIN)
    assert started <= rate.last_seen_at <= timezone.now()
    assert ledger.quote("sora-2-pro", PRO_PARAMS).total == Decimal("0.40")


def test_what_cancelling_costs_uses_the_rate_the_render_was_quoted_at(db, owner, team):
    Rate.objects.update_or_create(
        model="sora2",
        rate_key="any",
        defaults={"usd_per_second": Decimal("0.12"), "source": RateSource.ADMIN},
    )
    render = submit(owner)
    Render.objects.filter(pk=render.pk).update(state=State.RUNNING, progress=50)

    assert fresh(render).cancel_cost == Decimal("0.36")  # 3 of 5 seconds at $0.12


@pytest.mark.django_db
def test_a_learned_rate_keeps_only_the_precision_a_rounded_bill_carries(owner):
    render = Render.objects.create(
        user=owner,
        model="sora-2-pro",
        prompt="A harbour at dusk",
        params={"duration_seconds": 15, "resolution": "1080p", "aspect_ratio": "16:9"},
        estimated_cost=Decimal("3.4688"),
        rate_per_second=Decimal("0.23125"),
    )
    # 15 s x 0.23125 = 3.46875, billed rounded to 4 places
    rate = ledger.learn_rate(render, Decimal("3.4688"))
    assert rate.usd_per_second == Decimal("0.23125")
