"""Smoke: a render goes from the form to a playable clip through the emulator."""

import pytest

from studio.lifecycle.poller import run_poller
from studio.lifecycle.submit import submit_step
from studio.models import State
from tests.fixtures import submit_render


def submit(user, **fields):
    return submit_render(
        user, {"model": "sora2", "prompt": "A red apple rolls", "duration_seconds": "5", **fields}
    )


@pytest.mark.django_db(transaction=True)
def test_render_completes(gateway, owner, queue):
    render = submit(owner)
    assert queue.names() == ["submit_render"]
    submit_step(render.pk)
    render.refresh_from_db()
    assert render.state == State.QUEUED
    result = run_poller(max_seconds=30, tick=0.05)
    print(result)
    queue.run()
    render.refresh_from_db()
    assert render.state == State.COMPLETED, (render.state, render.error)
    assert render.video_duration == pytest.approx(5, abs=0.3)
