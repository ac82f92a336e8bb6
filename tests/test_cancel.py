"""Cancel never holds up polling: a gateway that refuses or lacks a cancel path still gets the render finished.

Neither gateway page documents a cancel path. A 404/405 from ours means the gateway cannot cancel (remembered
per gateway and protocol, so the button stops offering it); other failures are retried a bounded number of times.
Either way the render is polled on and completes, billed as usual, and its card says what became of the cancel.
"""

from __future__ import annotations

import pytest

from studio.actions.renders import do_cancel_render, do_submit_render
from studio.forms import RenderForm
from studio.gateway.client import GatewayClient
from studio.lifecycle.cancel import MAX_CANCEL_ATTEMPTS, unsupported_protocols
from studio.lifecycle.poll import poll_step
from studio.lifecycle.submit import submit_step
from studio.models import GatewayAlert, GatewayCapability, Render, State
from tests.conftest import fresh, poll_until

pytestmark = pytest.mark.django_db(transaction=True)


class Counting(GatewayClient):
    """A gateway client that counts the cancels and polls it sends."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cancels: list[str] = []
        self.polls = 0

    def cancel(self, model, task_id):
        self.cancels.append(task_id)
        return super().cancel(model, task_id)

    def poll(self, model, task_id):
        self.polls += 1
        return super().poll(model, task_id)


@pytest.fixture
def api(gateway):
    with Counting() as client:
        yield client


def sent(user, api, model="sora2") -> Render:
    fields = {"model": model, "prompt": "A kite over a beach", "duration_seconds": 5}
    if model != "sora2":
        fields |= {"duration_seconds": 4, "resolution": "720p"}
    form = RenderForm(fields)
    assert form.is_valid(), form.errors
    render = do_submit_render(user, form.order())
    assert submit_step(render.pk, api) == "submitted"
    return fresh(render)


def finished(render: Render) -> bool:
    return render.state in (State.DOWNLOADING, State.COMPLETED)


@pytest.mark.parametrize("status", [404, 405])
def test_a_gateway_without_a_cancel_path_still_finishes_the_render(gateway, owner, queue, api, status):
    gateway.add_fault("cancel", status=status, times=50)
    render = sent(owner, api)

    do_cancel_render(render)
    render = poll_until(render, api, finished)

    assert api.cancels == [render.gateway_task_id]  # asked once: the answer says there is no cancel path
    assert api.polls >= 2  # and polling went on
    assert "cannot cancel" in render.cancel_note
    assert render.billed_cost is not None  # it ran to the end and was billed as usual
    assert GatewayCapability.objects.get(protocol="openai_video").can_cancel is False
    assert "openai_video" in unsupported_protocols()
    assert GatewayAlert.objects.filter(kind=GatewayAlert.Kind.CANCEL_REFUSED, render=render).exists()


def test_once_known_the_gateway_is_not_asked_to_cancel_again(gateway, owner, queue, api):
    gateway.add_fault("cancel", status=404, times=50)
    first = sent(owner, api)
    do_cancel_render(first)
    poll_until(first, api, finished)
    second = sent(owner, api)

    outcome = do_cancel_render(second)
    second = poll_until(second, api, finished)

    assert outcome.message == "This gateway cannot cancel renders: it runs to the end and is billed as usual."
    assert second.cancel_requested_at is None
    assert api.cancels == [first.gateway_task_id]


def test_a_failing_cancel_is_tried_a_bounded_number_of_times_while_polling_goes_on(
    gateway, owner, queue, api
):
    gateway.add_fault("cancel", status=503, times=50)
    gateway.add_fault(
        "poll", kind="status", value="running", times=100_000
    )  # it renders for as long as we ask
    render = sent(owner, api)

    do_cancel_render(render)
    for _ in range(MAX_CANCEL_ATTEMPTS + 3):
        poll_step(render.pk, api)
    render = fresh(render)

    assert len(api.cancels) == MAX_CANCEL_ATTEMPTS  # and no more, however long it runs
    assert api.polls == MAX_CANCEL_ATTEMPTS + 3  # every tick polled, cancel or not
    assert render.cancel_attempts == MAX_CANCEL_ATTEMPTS
    assert f"refused the cancel {MAX_CANCEL_ATTEMPTS} times" in render.cancel_note
    assert GatewayCapability.objects.filter(can_cancel=False).count() == 0  # a 5xx says nothing of the path
    gateway.clear_faults()
    assert finished(poll_until(render, api, finished))  # and it runs to its normal end


def test_a_cancel_that_fails_once_is_sent_again_and_then_cancels(gateway, owner, queue, api):
    gateway.add_fault("cancel", status=503)
    render = sent(owner, api)

    do_cancel_render(render)
    steps = [poll_step(render.pk, api) for _ in range(2)]

    render = fresh(render)
    assert steps[-1] == "cancelled"
    assert render.state == State.CANCELLED
    assert len(api.cancels) == 2
    assert GatewayCapability.objects.get(protocol="openai_video").can_cancel is True
