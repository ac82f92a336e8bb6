"""A slow download through a real django-q2 cluster: it goes on over several tasks, survives the cluster being
killed mid-body, and resumes from the bytes on disk after the restart."""

from __future__ import annotations

import signal

import pytest

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.lifecycle.download import PART, render_dir
from studio.models import Render, State
from tests.conftest import wait_for
from tests.fixtures import SHORT_PRO

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_trickled_download_killed_mid_body_resumes_after_restart(cluster, gateway, owner, sig):
    # One-second slices, a two-second stall: the ~250 KB clip trickles at 40 KB/s over several tasks.
    cluster.env.update(STUDIO_DOWNLOAD_SLICE_SECONDS="1", STUDIO_DOWNLOAD_STALL_SECONDS="2")
    gateway.add_fault("result", times=10_000, kind="trickle", rate=40_000)
    cluster.start()
    form = RenderForm(SHORT_PRO)
    assert form.is_valid(), form.errors
    render = do_submit_render(owner, form.order())
    part = render_dir(render.pk) / PART

    def resumed_once():
        """a second download task resumed the partial file"""
        render.refresh_from_db()
        requests = gateway.file_requests(render.gateway_task_id) if render.gateway_task_id else []
        return len(requests) >= 2 and part.exists() and part.stat().st_size > 0

    wait_for(resumed_once, timeout=60)
    cluster.kill(sig)
    render.refresh_from_db()
    assert render.state == State.DOWNLOADING
    on_disk = part.stat().st_size
    killed_after = len(gateway.file_requests(render.gateway_task_id))

    cluster.start()

    def finished():
        """the render reached a terminal state"""
        render.refresh_from_db()
        return render.state not in {
            State.PENDING,
            State.SUBMITTING,
            State.QUEUED,
            State.RUNNING,
            State.DOWNLOADING,
        }

    wait_for(finished, timeout=120)
    assert render.state == State.COMPLETED, render.error
    clip = (gateway.clips_dir / f"{render.gateway_task_id}.mp4").read_bytes()
    assert (render_dir(render.pk) / "clip.mp4").read_bytes() == clip
    assert sorted(p.name for p in render_dir(render.pk).iterdir()) == ["clip.mp4", "poster.jpg"]
    requests = gateway.file_requests(render.gateway_task_id)
    after_restart = requests[killed_after:]
    assert after_restart, "the restarted cluster fetched nothing"
    first = after_restart[0]  # resumed from what the killed cluster left on disk, not from zero
    assert first["range"].startswith("bytes=") and int(first["range"][6:-1]) == on_disk > 0
    assert all(r["range"] for r in requests[1:])  # never started over
    assert Render.objects.get(pk=render.pk).billed_cost == render.estimated_cost
