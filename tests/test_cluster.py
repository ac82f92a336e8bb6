"""A real django-q2 cluster: renders finish through it, and survive it being killed mid-render."""

from __future__ import annotations

import signal

import pytest

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.models import Render, State
from tests.conftest import wait_for

pytestmark = pytest.mark.cluster


def submit(user, prompt: str = "A lighthouse at dusk, waves rolling in", **fields) -> Render:
    form = RenderForm({"model": "sora2", "prompt": prompt, "duration_seconds": "5", **fields})
    assert form.is_valid(), form.errors
    return do_submit_render(user, form.order())


def state_of(render: Render) -> str:
    render.refresh_from_db()
    return render.state


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_cluster_killed_mid_render_finishes_it_after_restart_with_one_submission(
    cluster, gateway, owner, sig
):
    # The gateway says "running" for as long as this fault lasts: the kill lands mid-render.
    gateway.add_fault("poll", times=100_000, kind="status", value="running")
    before = gateway.submissions
    cluster.start()
    render = submit(owner)

    def at_gateway():
        """the render is running at the gateway"""
        return state_of(render) == State.RUNNING

    wait_for(at_gateway, timeout=60)
    cluster.kill(sig)
    assert state_of(render) == State.RUNNING
    gateway.clear_faults()

    cluster.start()

    def finished():
        """the render reached a terminal state"""
        return state_of(render) in {State.COMPLETED, State.FAILED, State.EXPIRED, State.STALLED}

    wait_for(finished, timeout=90)
    render.refresh_from_db()
    assert render.state == State.COMPLETED, render.error
    assert gateway.submissions - before == 1
    assert render.video and render.video_duration == pytest.approx(5, abs=0.3)
    assert render.billed_cost == render.estimated_cost


def test_many_renders_finish_through_one_cluster(cluster, gateway, owner):
    before = gateway.submissions
    cluster.start()
    renders = [submit(owner, prompt=f"Shot {i}: a paper boat on a stream") for i in range(6)]

    def all_done():
        """all six renders completed"""
        return all(state_of(r) == State.COMPLETED for r in renders)

    wait_for(all_done, timeout=120)
    assert gateway.submissions - before == 6
