"""The render state machine against the emulator: every step, every fault, each with one clear end state.

Each test says what the render ends as, what it says, what it was billed, and how many tasks the gateway made.
Steps are driven one at a time (`submit_step`, `poll_step`, `download_step`, `sweep`, `run_poller`) or through
the queue with every task run twice, as a redelivering broker would.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from studio.actions.renders import do_cancel_render
from studio.gateway.client import GatewayClient
from studio.gateway.types import TaskState
from studio.lifecycle.download import download_step, render_dir
from studio.lifecycle.poll import LOST_TASK_AFTER_404S, POLL_ERROR_ALERT_AFTER, poll_step
from studio.lifecycle.poller import run_poller
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import sweep
from studio.models import AT_GATEWAY, GatewayAlert, Lease, Render, State
from studio.queue import POLLER_LEASE, shard_lease_names, shards_held
from tests.conftest import fresh, poll_until
from tests.fixtures import submit_render

pytestmark = pytest.mark.django_db(transaction=True)

SORA2 = {
    "model": "sora2",
    "prompt": "A red apple rolls across a wooden table",
    "duration_seconds": "5",
    "size": "1280x720",
}
PRO = {
    "model": "sora-2-pro",
    "prompt": "A lighthouse at dusk, waves below",
    "duration_seconds": "8",
    "resolution": "1080p",
    "aspect_ratio": "16:9",
}
SHORT_PRO = {**PRO, "duration_seconds": "1", "resolution": "720p", "aspect_ratio": "1:1"}


# --- fixtures and helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick(settings):
    """A poller task run by `queue.run` gives up after seconds, not the production 15."""
    settings.STUDIO_POLLER_RUN_SECONDS = 5


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory):
    """An emulator slow enough to catch a task while it is queued (~0.5 s) or running (~2 s)."""
    from studio.emulator import Emulator, EmulatorConfig

    emu = Emulator(
        EmulatorConfig(speed=4.0, fps=8, data_dir=tmp_path_factory.mktemp("slow-emulator"))
    ).start()
    yield emu
    emu.stop()


@pytest.fixture
def slow_api(gateway, slow_emulator, settings):
    """The studio pointed at the slow emulator instead."""
    slow_emulator.clear_faults()
    settings.BYTESPIKE_BASE_URL = slow_emulator.base_url
    with GatewayClient() as client:
        yield client


def submit(user, **fields) -> Render:
    return submit_render(user, {**SORA2, **fields})


def sent(user, api, **fields) -> Render:
    """A render the gateway has accepted (its queued submit task is left unrun: the test drives each step)."""
    render = submit(user, **fields)
    assert submit_step(render.pk, api) == "submitted"
    return fresh(render)


def poll_until_done(render: Render, api) -> Render:
    return poll_until(render, api, lambda r: r.state not in AT_GATEWAY)


def finished(user, api, queue, **fields) -> Render:
    """A render whose clip is ready at the gateway, waiting for a download the test runs itself."""
    render = poll_until_done(sent(user, api, **fields), api)
    assert render.state == State.DOWNLOADING, render.error
    queue.pending()  # drop the queued download task
    return render


def wait_for_gateway(emulator, task_id: str, status: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while emulator.task(task_id)["status"] != status:
        assert time.monotonic() < deadline, f"task {task_id} never became {status}"
        time.sleep(0.02)


def outcomes(results) -> dict[str, list]:
    """What each task returned, by task name, from `queue.run()`."""
    by_name = defaultdict(list)
    for name, result in results:
        by_name[name].append(result)
    return by_name


def files_of(render: Render) -> list[str]:
    folder = render_dir(render.pk)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def open_alerts(kind: str, render: Render | None = None):
    alerts = GatewayAlert.objects.filter(kind=kind, resolved_at__isnull=True)
    return alerts.filter(render=render) if render is not None else alerts


def seconds_until(when) -> float:
    return (when - timezone.now()).total_seconds()


# --- the happy path ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "price"), [(SORA2, Decimal("0.50")), (PRO, Decimal("1.85"))], ids=["sora2", "sora-2-pro"]
)
def test_render_completes_once_when_every_task_runs_twice(gateway, owner, queue, fields, price):
    before = gateway.submissions
    render = submit(owner, **fields)

    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert render.state == State.COMPLETED, render.error
    assert ran["submit_render"] == ["submitted", "skipped"]
    assert ran["download_render"] == ["completed", "skipped"]
    assert gateway.submissions - before == 1
    assert isinstance(render.billed_cost, Decimal)
    assert render.billed_cost == render.estimated_cost == price
    assert render.error == ""
    assert render.progress == 100
    assert files_of(render) == ["clip.mp4", "poster.jpg"]  # no partial file left beside them
    assert Path(render.video.path).stat().st_size == render.video_bytes > 0
    assert Path(render.poster.path).stat().st_size > 0
    assert render.video_duration == pytest.approx(int(fields["duration_seconds"]), abs=0.3)
    assert (render.video_width, render.video_height) == render.frame_size
    assert render.result_expires_at > timezone.now() + timedelta(hours=23)
    assert render.finished_at is not None
    assert render.next_poll_at is None and render.next_attempt_at is None and render.lease_until is None


def test_a_poll_that_sees_the_task_start_counts_once(gateway, owner, queue, api):
    render = sent(owner, api)
    polls = 0
    while render.state == State.QUEUED:
        poll_step(render.pk, api)
        polls += 1
        render = fresh(render)
    assert render.state == State.RUNNING
    assert render.started_at is not None
    assert render.poll_count == polls


# --- submit --------------------------------------------------------------------------------------------------


def test_submit_5xx_goes_back_to_pending_and_the_poller_resends_it_once(gateway, owner, queue, api):
    before = gateway.submissions
    gateway.add_fault("submit", status=503)
    render = submit(owner)

    assert submit_step(render.pk, api) == "retry"
    render = fresh(render)
    assert render.state == State.PENDING
    assert render.error_code == "retrying"
    assert render.error.startswith("Retrying:")
    assert 1 < seconds_until(render.next_attempt_at) <= 2
    assert submit_step(render.pk, api) == "skipped"  # not due yet

    Render.objects.filter(pk=render.pk).update(next_attempt_at=timezone.now())
    queue.pending()
    run = run_poller(max_seconds=10, tick=0.05)

    render = fresh(render)
    assert run["submits"] == 1
    assert render.state == State.DOWNLOADING, render.error
    assert render.submit_attempts == 2
    assert gateway.submissions - before == 1
    assert render.billed_cost == render.estimated_cost


def test_submit_gives_up_after_max_attempts_and_nothing_is_billed(gateway, owner, queue, api, settings):
    settings.STUDIO_SUBMIT_MAX_ATTEMPTS = 3
    before = gateway.submissions
    gateway.add_fault("submit", times=3, status=502)
    render = submit(owner)

    steps = []
    for _ in range(3):
        steps.append(submit_step(render.pk, api))
        Render.objects.filter(pk=render.pk, state=State.PENDING).update(next_attempt_at=timezone.now())

    render = fresh(render)
    assert steps == ["retry", "retry", "failed"]
    assert render.state == State.FAILED
    assert "gave up after 3 attempts" in render.error
    assert render.nothing_billed
    assert render.billed_cost == 0
    assert submit_step(render.pk, api) == "skipped"
    assert gateway.submissions == before
    assert gateway.pending_faults() == {}


def test_submit_429_waits_as_long_as_retry_after_says(gateway, owner, queue, api):
    before = gateway.submissions
    gateway.add_fault("submit", status=429, retry_after=7)
    render = submit(owner)

    assert submit_step(render.pk, api) == "retry"

    render = fresh(render)
    assert render.state == State.PENDING
    assert 6 < seconds_until(render.next_attempt_at) <= 7
    assert render.billed_cost is None
    assert submit_step(render.pk, api) == "skipped"
    assert gateway.submissions == before


def test_submit_400_fails_with_the_gateways_message_and_is_never_retried(gateway, owner, queue):
    before = gateway.submissions
    gateway.add_fault("submit", status=400, message="size must be one of 1280x720, 1920x1080")
    render = submit(owner)

    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert ran["submit_render"] == ["rejected", "skipped"]
    assert render.state == State.FAILED
    assert render.error == "size must be one of 1280x720, 1920x1080"
    assert render.error_code == "bad_request"
    assert render.submit_attempts == 1
    assert render.billed_cost == 0 and render.nothing_billed
    assert gateway.submissions == before


def test_blocked_prompt_is_never_billed_nor_retried(gateway, owner, queue):
    before = gateway.submissions
    render = submit(owner, prompt="A scene full of gore")

    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert ran["submit_render"] == ["blocked", "skipped"]
    assert render.state == State.BLOCKED
    assert render.error == "The prompt was blocked by upstream safety."
    assert render.billed_cost == 0 and render.nothing_billed
    assert render.submit_attempts == 1
    assert gateway.submissions == before


def test_a_blank_api_key_is_refused_without_sending_and_the_alert_names_no_status(
    gateway, owner, queue, settings
):
    settings.GATEWAY_API_KEY = "  "
    before = gateway.submissions
    render = submit(owner)
    queue.run()
    alert = open_alerts(GatewayAlert.Kind.CREDENTIALS).get()
    assert fresh(render).state == State.PENDING
    assert "(None)" not in alert.message and alert.message.startswith(
        "The gateway rejected the studio's API key: "
    )
    assert gateway.submissions == before


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_pause_submissions_and_keep_renders_pending(gateway, owner, queue, status):
    before = gateway.submissions
    gateway.add_fault("submit", status=status)
    first = submit(owner)
    queue.run(twice=True)

    first = fresh(first)
    alert = open_alerts(GatewayAlert.Kind.CREDENTIALS).get()
    assert first.state == State.PENDING
    assert first.error_code == "credentials"
    assert "operator has been alerted" in first.error
    assert first.submit_attempts == 0  # a rejected key is not an attempt at the render
    assert 290 < seconds_until(first.next_attempt_at) <= 300
    assert 290 < seconds_until(alert.pauses_submissions_until) <= 300
    assert str(status) in alert.message

    second = submit(owner, prompt="A second render while paused")
    assert outcomes(queue.run(twice=True))["submit_render"] == ["paused", "paused"]

    second = fresh(second)
    assert second.state == State.PENDING
    assert second.submit_attempts == 0
    assert second.next_attempt_at == alert.pauses_submissions_until
    assert gateway.submissions == before

    # Once the pause is over the next submission goes through and closes the alert.
    GatewayAlert.objects.update(pauses_submissions_until=timezone.now())
    Render.objects.update(next_attempt_at=timezone.now())
    assert submit_step(first.pk) == "submitted"
    assert not open_alerts(GatewayAlert.Kind.CREDENTIALS).exists()
    assert gateway.submissions - before == 1


def test_empty_wallet_fails_the_render_and_alerts(gateway, owner, queue):
    before = gateway.submissions
    gateway.add_fault("submit", status=402)
    render = submit(owner)

    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert ran["submit_render"] == ["wallet_empty", "skipped"]
    assert render.state == State.FAILED
    assert render.error_code == "wallet_empty"
    assert render.error == "The wallet has insufficient credits for this request."
    assert render.billed_cost == 0 and render.nothing_billed
    assert open_alerts(GatewayAlert.Kind.WALLET).exists()
    assert gateway.submissions == before


def test_submit_that_hangs_past_the_read_timeout_is_never_resubmitted(gateway, owner, queue, settings):
    settings.GATEWAY_TIMEOUT = {"connect": 1, "read": 0.5, "write": 1}
    before = gateway.submissions
    gateway.add_fault("submit", kind="hang", seconds=1)
    render = submit(owner)

    ran = outcomes(queue.run(twice=True))
    sweep()

    render = fresh(render)
    assert ran["submit_render"] == ["unknown", "skipped"]
    assert render.state == State.SUBMIT_UNKNOWN
    assert "may have been accepted" in render.error
    assert render.gateway_task_id == ""
    assert render.billed_cost is None  # the gateway may bill it: the studio does not know
    assert not render.nothing_billed
    assert open_alerts(GatewayAlert.Kind.SUBMIT_UNKNOWN, render).exists()
    assert gateway.submissions - before == 1  # the gateway made the task; the studio never sent another


def test_submit_whose_connection_drops_is_submit_unknown(gateway, owner, queue):
    before = gateway.submissions
    gateway.add_fault("submit", kind="drop")
    render = submit(owner)

    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert ran["submit_render"] == ["unknown", "skipped"]
    assert render.state == State.SUBMIT_UNKNOWN
    assert open_alerts(GatewayAlert.Kind.SUBMIT_UNKNOWN, render).exists()
    assert gateway.submissions - before == 1


def test_an_answer_arriving_after_the_sweep_gave_up_still_records_the_task(gateway, owner, queue):
    """The sweep marks a slow submission unknown; the gateway's late answer settles it with the task id."""
    before = gateway.submissions
    render = submit(owner)

    class SweptMidway(GatewayClient):
        def submit(self, request):
            accepted = super().submit(request)
            long_ago = timezone.now() - timedelta(seconds=settings.GATEWAY_TIMEOUT["read"] + 61)
            Render.objects.filter(pk=render.pk).update(updated_at=long_ago)
            assert sweep()["submit_unknown"] == 1
            return accepted

    with SweptMidway() as client:
        assert submit_step(render.pk, client) == "submitted"

    render = fresh(render)
    assert render.state == State.QUEUED
    assert render.gateway_task_id
    assert render.error == "" and render.finished_at is None
    assert not open_alerts(GatewayAlert.Kind.SUBMIT_UNKNOWN, render).exists()
    with GatewayClient() as client:
        assert poll_until_done(render, client).state == State.DOWNLOADING
    assert gateway.submissions - before == 1


def test_a_render_cancelled_during_a_failed_submission_is_not_resent(gateway, owner, queue):
    before = gateway.submissions
    gateway.add_fault("submit", status=503)
    render = submit(owner)

    class CancelledMidway(GatewayClient):
        def submit(self, request):
            do_cancel_render(fresh(render))
            return super().submit(request)

    with CancelledMidway() as client:
        assert submit_step(render.pk, client) == "cancelled"

    render = fresh(render)
    assert render.state == State.CANCELLED
    assert render.billed_cost == 0 and render.nothing_billed
    assert submit_step(render.pk) == "skipped"
    assert gateway.submissions == before


# --- poll ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"kind": "slow", "seconds": 1}, {"kind": "malformed"}],
    ids=["5xx", "slow", "malformed"],
)
def test_a_failed_poll_is_counted_and_the_render_still_completes(gateway, owner, queue, settings, fault, api):
    before = gateway.submissions
    render = sent(owner, api)  # at the usual timeouts: a loaded machine may take longer than 0.5 s to submit
    settings.GATEWAY_TIMEOUT = {"connect": 1, "read": 0.5, "write": 1}  # so the slow poll times out
    with GatewayClient() as api:
        gateway.add_fault("poll", **fault)

        assert poll_step(render.pk, api) == "scheduled"
        render = fresh(render)
        assert render.state in AT_GATEWAY
        assert render.poll_errors == 1
        assert render.next_poll_at is not None

        render = poll_until_done(render, api)
    assert render.state == State.DOWNLOADING
    assert render.poll_errors == 0
    queue.run()
    render = fresh(render)
    assert render.state == State.COMPLETED
    assert render.billed_cost == render.estimated_cost
    assert gateway.submissions - before == 1


def test_polls_failing_for_long_alert_an_operator(gateway, owner, queue, api):
    render = sent(owner, api)
    gateway.add_fault("poll", times=POLL_ERROR_ALERT_AFTER, status=502)

    for _ in range(POLL_ERROR_ALERT_AFTER - 1):
        poll_step(render.pk, api)
    assert not open_alerts(GatewayAlert.Kind.STALLED, render).exists()
    poll_step(render.pk, api)

    render = fresh(render)
    assert render.state in AT_GATEWAY  # still polled: the gateway may come back
    assert render.poll_errors == POLL_ERROR_ALERT_AFTER
    assert open_alerts(GatewayAlert.Kind.STALLED, render).exists()


def test_an_unknown_status_is_treated_as_running(gateway, owner, queue, api):
    render = sent(owner, api)
    assert render.state == State.QUEUED
    gateway.add_fault("poll", kind="status", value="warming_up")

    assert poll_step(render.pk, api) == "scheduled"

    render = fresh(render)
    assert render.state == State.RUNNING
    assert render.poll_errors == 0
    assert poll_until_done(render, api).state == State.DOWNLOADING


def test_a_status_going_backwards_is_ignored(gateway, owner, queue, api):
    render = poll_until(sent(owner, api), api, lambda r: r.state == State.RUNNING and r.progress > 0)
    progress = render.progress
    gateway.add_fault("poll", kind="status", value="queued")

    assert poll_step(render.pk, api) == "scheduled"

    render = fresh(render)
    assert render.state == State.RUNNING
    assert render.progress >= progress
    assert poll_until_done(render, api).state == State.DOWNLOADING


def test_a_task_the_gateway_keeps_answering_404_for_is_stalled_with_an_alert(gateway, owner, queue, api):
    render = sent(owner, api)
    gateway.add_fault("poll", times=LOST_TASK_AFTER_404S, status=404)

    steps = [poll_step(render.pk, api) for _ in range(LOST_TASK_AFTER_404S)]

    render = fresh(render)
    assert steps == ["scheduled"] * (LOST_TASK_AFTER_404S - 1) + ["lost"]
    assert render.state == State.STALLED
    assert render.error_code == "lost"
    assert render.gateway_task_id in render.error
    assert open_alerts(GatewayAlert.Kind.STALLED, render).exists()
    assert poll_step(render.pk, api) == "skipped"


def test_a_task_that_fails_at_the_gateway_fails_the_render_and_bills_nothing(gateway, owner, queue, api):
    before = gateway.submissions
    gateway.add_fault("task", outcome="fail", message="The model could not follow the prompt.")

    render = poll_until_done(sent(owner, api), api)

    assert render.state == State.FAILED
    assert render.error == "The model could not follow the prompt."
    assert render.error_code == "generation_failed"
    assert render.billed_cost == 0 and render.nothing_billed
    assert gateway.submissions - before == 1


def test_a_render_past_the_hard_deadline_is_stalled_with_an_alert(gateway, owner, queue, api, settings):
    settings.STUDIO_STALL_AFTER_SECONDS = 2  # 40 ms at the test's poll scale
    render = sent(owner, api)
    time.sleep(0.06)

    assert poll_step(render.pk, api) == "stalled"

    render = fresh(render)
    assert render.state == State.STALLED
    assert render.error_code == "stalled"
    assert "No result after 2 seconds" in render.error
    assert "operator has been alerted" in render.error
    assert render.billed_cost is None
    assert open_alerts(GatewayAlert.Kind.STALLED, render).exists()


# --- cancel --------------------------------------------------------------------------------------------------


def test_cancelling_a_pending_render_is_immediate_and_free(gateway, owner, queue):
    before = gateway.submissions
    render = submit(owner)

    outcome = do_cancel_render(render)
    ran = outcomes(queue.run(twice=True))

    render = fresh(render)
    assert render.state == State.CANCELLED
    assert "nothing was billed" in outcome.message
    assert ran["submit_render"] == ["skipped", "skipped"]
    assert render.billed_cost == 0 and render.nothing_billed
    assert gateway.submissions == before


def test_cancelling_a_queued_render_is_free(gateway, owner, queue, slow_api, slow_emulator):
    render = sent(owner, slow_api)
    assert render.state == State.QUEUED

    outcome = do_cancel_render(render)
    assert "free if the gateway has not started" in outcome.message
    assert poll_step(render.pk, slow_api) == "cancelled"

    render = fresh(render)
    assert render.state == State.CANCELLED
    assert render.billed_cost == 0 and render.nothing_billed
    assert slow_emulator.task(render.gateway_task_id)["status"] == "cancelled"


def test_cancelling_a_running_render_bills_the_seconds_rendered(
    gateway, owner, queue, slow_api, slow_emulator
):
    render = poll_until(sent(owner, slow_api), slow_api, lambda r: r.state == State.RUNNING)

    outcome = do_cancel_render(render)
    assert "seconds rendered by then are billed (at least" in outcome.message
    assert poll_step(render.pk, slow_api) == "cancelled"

    render = fresh(render)
    task = slow_emulator.task(render.gateway_task_id)
    assert render.state == State.CANCELLED
    assert 0 < render.billed_cost < render.estimated_cost
    assert render.billed_cost == Decimal(str(task["cancel_credits"]))
    assert not render.nothing_billed


def test_cancel_clicked_twice_cancels_once(gateway, owner, queue, slow_api, slow_emulator):
    render = sent(owner, slow_api)
    cancels = []

    class Counting(GatewayClient):
        def cancel(self, model, task_id):
            cancels.append(task_id)
            return super().cancel(model, task_id)

    first = do_cancel_render(render)
    second = do_cancel_render(fresh(render))
    with Counting() as client:
        steps = [poll_step(render.pk, client) for _ in range(2)]

    assert first.message.startswith("Cancelling")
    assert second.message == "Already cancelling."
    assert steps == ["cancelled", "skipped"]
    assert cancels == [render.gateway_task_id]
    assert fresh(render).state == State.CANCELLED


def test_cancel_racing_completion_ends_completed_and_billed(gateway, owner, queue, api):
    render = sent(owner, api)
    wait_for_gateway(gateway, render.gateway_task_id, "completed")

    do_cancel_render(render)  # the studio still thinks it is queued
    assert poll_step(render.pk, api) == "completed"
    queue.run()

    render = fresh(render)
    assert render.state == State.COMPLETED
    assert render.error == ""
    assert render.billed_cost == render.estimated_cost
    assert files_of(render) == ["clip.mp4", "poster.jpg"]


# --- download ------------------------------------------------------------------------------------------------


def test_a_result_url_expired_before_the_download_expires_the_render_and_says_it_was_billed(
    gateway, owner, queue, api
):
    render = sent(owner, api)
    gateway.expire_results()
    render = poll_until_done(render, api)
    queue.pending()
    assert render.result_expires_at <= timezone.now()

    assert download_step(render.pk) == "expired"

    render = fresh(render)
    assert render.state == State.EXPIRED
    assert render.error_code == "result_expired"
    assert "It was billed" in render.error
    assert render.billed_cost == render.estimated_cost
    assert not render.nothing_billed
    assert files_of(render) == []


def test_a_result_url_revoked_after_completion_expires_the_render(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    gateway.expire_results()  # the URL the studio holds now answers 403, long before its stated expiry

    assert download_step(render.pk) == "expired"

    render = fresh(render)
    assert render.state == State.EXPIRED
    assert "It was billed" in render.error
    assert render.billed_cost == render.estimated_cost
    assert files_of(render) == []


@pytest.mark.parametrize("kind", ["truncate", "wrong_type"])
def test_a_bad_download_is_retried_and_succeeds_once_the_fault_is_gone(gateway, owner, queue, api, kind):
    render = finished(owner, api, queue)
    gateway.add_fault("result", kind=kind)

    assert download_step(render.pk) == "retry"

    render = fresh(render)
    assert render.state == State.DOWNLOADING
    assert render.error.startswith("Download will be retried")
    assert render.lease_until is None
    assert 0 < seconds_until(render.next_attempt_at) <= 2
    # A cut body is kept for the next attempt to resume (issue 9); a body of the wrong type is gone.
    assert files_of(render) == (["clip.mp4.part"] if kind == "truncate" else [])

    assert download_step(render.pk) == "completed"
    render = fresh(render)
    assert render.state == State.COMPLETED
    assert render.error == ""
    assert files_of(render) == ["clip.mp4", "poster.jpg"]


def test_a_redirect_to_another_host_fails_the_download_and_fetches_nothing(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    gateway.add_fault("result", kind="redirect", location="http://cdn.example.com/clip.mp4")

    assert download_step(render.pk) == "failed"

    render = fresh(render)
    assert render.state == State.FAILED
    assert render.error_code == "download"
    assert "not a gateway host" in render.error
    assert "It was billed" in render.error
    assert render.billed_cost == render.estimated_cost
    assert files_of(render) == []


def test_a_billed_render_whose_download_failed_does_not_claim_nothing_was_billed(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    gateway.add_fault("result", kind="redirect", location="http://cdn.example.com/clip.mp4")
    download_step(render.pk)

    render = fresh(render)
    assert render.billed_cost > 0
    assert not render.nothing_billed


def test_a_full_disk_during_the_download_schedules_a_retry_and_keeps_the_render(
    gateway, owner, queue, api, monkeypatch
):
    render = finished(owner, api, queue)
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("studio.gateway.client.os.fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    assert download_step(render.pk) == "retry"
    monkeypatch.undo()

    render = fresh(render)
    assert render.state == State.DOWNLOADING
    assert "No space left on device" in render.error
    assert render.result_url
    assert render.next_attempt_at is not None and render.lease_until is None
    assert files_of(render) == []

    assert download_step(render.pk) == "completed"
    assert fresh(render).state == State.COMPLETED


def test_two_downloads_at_once_store_one_clip(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    start = threading.Barrier(2)
    steps = []

    def download():
        try:
            start.wait()
            steps.append(download_step(render.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    render = fresh(render)
    assert sorted(steps) == ["completed", "skipped"]
    assert render.state == State.COMPLETED
    assert render.download_attempts == 1
    assert files_of(render) == ["clip.mp4", "poster.jpg"]


# --- sweep ---------------------------------------------------------------------------------------------------


def test_sweep_marks_a_render_stuck_submitting_as_submit_unknown(gateway, owner, queue):
    before = gateway.submissions
    stuck, recent = submit(owner), submit(owner, prompt="Just started submitting")
    queue.pending()
    limit = settings.GATEWAY_TIMEOUT["read"] + 60
    Render.objects.filter(pk=stuck.pk).update(
        state=State.SUBMITTING, updated_at=timezone.now() - timedelta(seconds=limit + 1)
    )
    Render.objects.filter(pk=recent.pk).update(
        state=State.SUBMITTING, updated_at=timezone.now() - timedelta(seconds=limit - 5)
    )

    assert sweep()["submit_unknown"] == 1
    run_poller(max_seconds=0.3, tick=0.05)

    stuck, recent = fresh(stuck), fresh(recent)
    assert stuck.state == State.SUBMIT_UNKNOWN
    assert "not resubmitted" in stuck.error
    assert open_alerts(GatewayAlert.Kind.SUBMIT_UNKNOWN, stuck).exists()
    assert recent.state == State.SUBMITTING
    assert gateway.submissions == before


def test_sweep_revives_a_lost_download_and_the_poller_requeues_it(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    Render.objects.filter(pk=render.pk).update(updated_at=timezone.now() - timedelta(minutes=3))

    assert sweep()["downloads_revived"] == 1
    assert fresh(render).next_attempt_at is not None
    queue.pending()
    run = run_poller(max_seconds=0.3, tick=0.05)

    assert run["downloads"] == 1
    assert "download_render" in queue.names()
    assert download_step(render.pk) == "completed"
    assert fresh(render).state == State.COMPLETED


def test_a_download_in_progress_is_not_revived(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    Render.objects.filter(pk=render.pk).update(
        updated_at=timezone.now() - timedelta(minutes=3), lease_until=timezone.now() + timedelta(minutes=5)
    )

    assert sweep()["downloads_revived"] == 0
    assert fresh(render).next_attempt_at is None


def test_the_poller_picks_up_a_pending_render_whose_submit_task_was_lost(gateway, owner, queue):
    before = gateway.submissions
    render = submit(owner)
    queue.pending()  # the submit task is lost
    Render.objects.filter(pk=render.pk).update(created_at=timezone.now() - timedelta(seconds=11))

    run = run_poller(max_seconds=10, tick=0.05)

    render = fresh(render)
    assert run["submits"] == 1
    assert render.state == State.DOWNLOADING
    assert gateway.submissions - before == 1


def test_sweep_starts_the_poller_when_work_is_in_flight_and_nobody_polls(gateway, owner, queue, api):
    sent(owner, api)
    queue.pending()

    assert sweep()["in_flight"] is True
    assert queue.names() == ["run_poller"]

    for name in shard_lease_names():  # another cluster's poller holds every shard
        Lease.acquire(name, "another-poller", 30)
    sweep()
    assert queue.names() == []


# --- the poller ----------------------------------------------------------------------------------------------


def test_only_one_poller_runs_at_a_time(gateway, owner, queue, api):
    render = sent(owner, api)  # in flight, but not due: the poller has work for its whole run
    Render.objects.filter(pk=render.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    start = threading.Barrier(2)
    runs = []

    def poll():
        try:
            start.wait()
            runs.append(run_poller(max_seconds=1, tick=0.05))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(run["ran"] for run in runs) == [False, True]
    assert {"ran": False} in runs
    assert shards_held() == 0  # the run gave back what it held
    assert not Lease.objects.filter(name__startswith=POLLER_LEASE, expires_at__gt=timezone.now()).exclude(
        holder=""
    )


def test_one_hanging_poll_does_not_hold_up_the_other_renders(gateway, owner, queue, monkeypatch):
    """The first poll hangs until the other 29 renders have been polled to completion: a poller that waited for
    it (polling in line, or joining its threads every tick) would never get there. What is asserted is the order
    of events, not how long anything took: speed belongs in `make bench`."""
    before = gateway.submissions
    renders = [submit(owner, **{**SHORT_PRO, "prompt": f"Render number {n}"}) for n in range(30)]
    queue.pending()  # the poller sends them all itself
    Render.objects.update(created_at=timezone.now() - timedelta(seconds=11))
    lock = threading.Lock()
    hung: list[str] = []  # the task whose first poll hangs
    others_done = threading.Event()  # set once every other task was seen completed
    released: list[bool] = []  # how the hang ended: True if by the others' progress, False if it timed out
    polled: dict[str, int] = defaultdict(int)  # polls of each task, counted while the hang lasts
    completed: set[str] = set()

    class Recording(GatewayClient):
        def poll(self, model, task_id):
            with lock:
                if not hung:
                    hung.append(task_id)
            if task_id == hung[0] and not released:
                released.append(others_done.wait(timeout=30))
                return super().poll(model, task_id)
            status = super().poll(model, task_id)
            with lock:
                if task_id != hung[0] and not others_done.is_set():
                    polled[task_id] += 1
                    if status.state == TaskState.COMPLETED:
                        completed.add(task_id)
                    if len(completed) == len(renders) - 1:
                        others_done.set()
            return status

    monkeypatch.setattr("studio.lifecycle.transitions.client_factory", Recording)

    run = run_poller(max_seconds=120, tick=0.05)
    queue.run()

    assert released == [True]  # the hang ended because the others finished while it lasted
    assert len(polled) == len(completed) == 29 and hung[0] not in polled
    assert {fresh(r).state for r in renders} == {State.COMPLETED}
    assert run["submits"] == 30
    assert run["work_left"] is False
    assert gateway.submissions - before == 30
