"""Downloads that survive a slow or broken link, clips that must decode whole, and files that go missing.

Every fault is acted out by the emulator over real HTTP: a trickle, a connection cut after K bytes, a stall, a
server that ignores Range, a damaged MP4. The emulator logs each file request (its Range header, status and the
bytes it sent), so a test can tell a resumed download from one started over. Slices and stalls are set to
fractions of a second; nothing here asserts how long anything took.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.checks import run_checks
from django.utils import timezone

from studio import queue as work_queue
from studio.actions.renders import do_submit_render
from studio.emulator.http import damaged_span
from studio.forms import RenderForm
from studio.lifecycle import download
from studio.lifecycle.download import download_step, render_dir
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import FILE_CHECK_LEASE, TEMP_SWEEP_LEASE, sweep
from studio.media import MediaError, decode_check, extract_poster, probe_video
from studio.models import AT_GATEWAY, GatewayAlert, Lease, LedgerEntry, LedgerKind, Render, State
from studio.money.ledger import UNREPORTED
from tests.conftest import fresh, make_clip, poll_until
from tests.fixtures import SHORT_PRO

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def short_slices(settings):
    """Stalls of a second, so faults that outlast them stay quick. A slice is long enough that a cut, a stall or a
    refusal is what ends an attempt even on a loaded machine; the tests of slicing itself shorten it."""
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = 10
    settings.STUDIO_DOWNLOAD_STALL_SECONDS = 1.0
    settings.STUDIO_POLLER_RUN_SECONDS = 5


def finished(user, api, queue, **fields) -> Render:
    """A render whose clip is ready at the gateway; its queued download is dropped for the test to drive."""
    form = RenderForm({**SHORT_PRO, **fields})
    assert form.is_valid(), form.errors
    render = do_submit_render(user, form.order())
    assert submit_step(render.pk, api) == "submitted"
    render = poll_until(fresh(render), api, lambda r: r.state not in AT_GATEWAY)
    assert render.state == State.DOWNLOADING, render.error
    queue.pending()
    return render


def source(gateway, render: Render) -> bytes:
    """The clip as the gateway holds it."""
    return (gateway.clips_dir / f"{render.gateway_task_id}.mp4").read_bytes()


def requests_for(gateway, render: Render) -> list[dict]:
    return [r for r in gateway.file_requests(render.gateway_task_id) if r["status"] != 302]


def files_of(render: Render) -> list[str]:
    folder = render_dir(render.pk)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def part_of(render: Render) -> Path:
    return render_dir(render.pk) / download.PART


def results(ran, name: str = "download_render") -> list:
    return [result for task, result in ran if task == name]


def settles(render: Render) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(render=render, kind=LedgerKind.SETTLE))


def open_alert(kind: str, render: Render) -> GatewayAlert | None:
    return GatewayAlert.objects.filter(kind=kind, render=render, resolved_at__isnull=True).first()


def sweep_files_now() -> dict:
    """Run the sweep with its once-a-minute file checks due now."""
    Lease.objects.filter(name__in=[FILE_CHECK_LEASE, TEMP_SWEEP_LEASE]).delete()
    return sweep()


def assert_whole(gateway, render: Render) -> None:
    render = fresh(render)
    assert render.state == State.COMPLETED, render.error
    assert Path(render.video.path).read_bytes() == source(gateway, render)
    assert render.video_bytes == len(source(gateway, render))
    assert files_of(render) == ["clip.mp4", "poster.jpg"]  # no partial or temporary file left


# --- A: resumed downloads ----------------------------------------------------------------------------------


def test_a_trickle_longer_than_a_slice_completes_over_several_tasks_resuming_each_time(
    gateway, owner, queue, api, settings
):
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = 0.5
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    # About three seconds for the whole clip, six times the slice: one task could not have fetched it alone.
    gateway.add_fault("result", times=1000, kind="trickle", rate=size // 3)

    work_queue.enqueue("download_render", render.pk)
    ran = queue.run()

    steps = results(ran)
    assert steps[-1] == "completed" and set(steps[:-1]) == {"continued"} and len(steps) >= 3
    assert_whole(gateway, render)
    seen = requests_for(gateway, render)
    assert len(seen) == len(steps)
    assert seen[0]["range"] == "" and seen[0]["status"] == 200
    # Each task asked only for what was not on disk yet: the offsets grow, and never past what the server sent
    # (a few bytes in flight when a slice ended are asked for again).
    offsets = [int(r["range"].removeprefix("bytes=").removesuffix("-")) for r in seen[1:]]
    assert all(r["status"] == 206 for r in seen[1:])
    sent = 0
    for request, offset in zip(seen, offsets, strict=False):
        sent += request["sent"]
        assert 0 < offset <= sent
    assert offsets == sorted(set(offsets))
    assert sum(r["sent"] for r in seen) < 1.5 * size  # resumed, never started over


def test_the_lease_is_renewed_while_bytes_flow(gateway, owner, queue, api, settings, monkeypatch):
    render = finished(owner, api, queue)
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = 30  # one task takes the whole trickle
    gateway.add_fault("result", kind="trickle", rate=len(source(gateway, render)) // 2)
    monkeypatch.setattr(download, "RENEW_EVERY_SECONDS", 0.2)
    leases = []
    original = download._Hold.on_bytes

    def watched(hold, size):
        original(hold, size)
        leases.append(Render.objects.values_list("lease_until", flat=True).get(pk=render.pk))

    monkeypatch.setattr(download._Hold, "on_bytes", watched)

    assert download_step(render.pk) == "completed"

    assert len(set(leases)) > 2 and leases == sorted(leases)
    assert_whole(gateway, render)


def test_a_connection_cut_mid_body_resumes_from_where_it_stopped(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    cut = size // 3
    gateway.add_fault("result", kind="cut", after=cut)

    assert download_step(render.pk) == "retry"
    render = fresh(render)
    assert render.state == State.DOWNLOADING and "interrupted" in render.error
    assert part_of(render).stat().st_size == cut  # kept for the next attempt, never served
    assert render.next_attempt_at is not None and render.lease_until is None

    assert download_step(render.pk) == "completed"

    first, second = requests_for(gateway, render)
    assert first["sent"] == cut
    assert (second["range"], second["status"], second["sent"]) == (f"bytes={cut}-", 206, size - cut)
    assert_whole(gateway, render)


def test_a_server_that_ignores_range_starts_over_cleanly(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    gateway.add_fault("result", kind="cut", after=size // 2)
    gateway.add_fault("result", kind="ignore_range")
    assert download_step(render.pk) == "retry"

    assert download_step(render.pk) == "completed"

    second = requests_for(gateway, render)[1]
    assert second["range"] == f"bytes={size // 2}-"
    assert (second["status"], second["sent"]) == (200, size)  # the whole file, written from its first byte
    assert_whole(gateway, render)


def test_a_stalled_download_times_out_and_the_retry_resumes(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    # Headers and a third of the body, then nothing for far longer than the stall time (1 s here).
    gateway.add_fault("result", kind="stall", after=size // 3, seconds=30)

    assert download_step(render.pk) == "retry"
    render = fresh(render)
    assert "stalled: no bytes for 1 s" in render.error
    assert part_of(render).stat().st_size == size // 3

    assert download_step(render.pk) == "completed"
    assert requests_for(gateway, render)[1]["range"] == f"bytes={size // 3}-"
    assert_whole(gateway, render)


@pytest.mark.parametrize("extra", [0, 1000], ids=["whole-part", "part-longer-than-the-file"])
def test_a_range_past_the_end_finishes_a_whole_part_and_starts_a_wrong_one_over(
    gateway, owner, queue, api, extra
):
    render = finished(owner, api, queue)
    clip = source(gateway, render)
    part_of(render).parent.mkdir(parents=True, exist_ok=True)
    part_of(render).write_bytes(clip + bytes(extra))  # a killed worker had fetched it all (or too much)

    assert download_step(render.pk) == "completed"

    seen = requests_for(gateway, render)
    assert seen[0]["range"] == f"bytes={len(clip) + extra}-" and seen[0]["status"] == 416
    if extra:  # the size on disk is not the file's: the bytes cannot be trusted, fetched again from zero
        assert (seen[1]["range"], seen[1]["status"], seen[1]["sent"]) == ("", 200, len(clip))
    else:
        assert len(seen) == 1
    assert_whole(gateway, render)


def test_the_size_cap_holds_across_resumed_attempts(gateway, owner, queue, api, settings):
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    gateway.add_fault("result", kind="cut", after=size // 2)
    assert download_step(render.pk) == "retry"
    settings.STUDIO_MAX_VIDEO_BYTES = size - 1  # the resumed answer says the whole file is over the cap

    assert download_step(render.pk) == "failed"

    render = fresh(render)
    assert render.state == State.FAILED and "cap" in render.error and "It was billed" in render.error
    assert files_of(render) == []


def test_a_resumed_download_checks_every_redirect_hop_and_asks_each_for_the_range(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    size = len(source(gateway, render))
    gateway.add_fault("result", kind="cut", after=size // 2)
    assert download_step(render.pk) == "retry"
    url = urlsplit(fresh(render).result_url)
    gateway.add_fault("result", kind="redirect", location=f"{url.path}?{url.query}")  # same host: followed

    assert download_step(render.pk) == "completed"
    assert requests_for(gateway, render)[1]["range"] == f"bytes={size // 2}-"
    assert_whole(gateway, render)

    other = finished(owner, api, queue)
    gateway.add_fault("result", kind="cut", after=1000)
    assert download_step(other.pk) == "retry"
    gateway.add_fault("result", kind="redirect", location="http://cdn.example.com/clip.mp4")
    assert download_step(other.pk) == "failed"
    assert "not a gateway host" in fresh(other).error
    assert files_of(other) == []


def test_an_attempt_that_lost_its_lease_stops_and_leaves_the_row_and_the_bytes(
    gateway, owner, queue, api, settings, monkeypatch
):
    render = finished(owner, api, queue)
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = 30
    gateway.add_fault("result", kind="trickle", rate=len(source(gateway, render)) // 2)
    monkeypatch.setattr(download, "RENEW_EVERY_SECONDS", 0.2)
    taken_over = timezone.now() + timedelta(minutes=5)
    original = download._Hold.on_bytes

    def another_worker_takes_it(hold, size):
        Render.objects.filter(pk=render.pk).update(lease_until=taken_over)
        original(hold, size)

    monkeypatch.setattr(download._Hold, "on_bytes", another_worker_takes_it)

    assert download_step(render.pk) == "skipped"

    render = fresh(render)
    assert render.state == State.DOWNLOADING and render.lease_until == taken_over
    assert part_of(render).stat().st_size > 0  # the other attempt resumes it


def test_the_slice_and_stall_must_leave_room_in_the_task_timeout(settings):
    assert not [m for m in run_checks() if m.id in ("studio.E008", "studio.E009")]
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = settings.Q_CLUSTER["timeout"] - 10
    assert [m.id for m in run_checks() if m.id.startswith("studio.E")] == ["studio.E009"]
    settings.STUDIO_DOWNLOAD_SLICE_SECONDS = 0
    assert [m.id for m in run_checks() if m.id.startswith("studio.E")] == ["studio.E008"]


# --- B: a clip is complete when it decodes from first frame to last -------------------------------------------


def damaged_copy(tmp_path) -> Path:
    clip = make_clip(tmp_path / "good.mp4", size="640x360", seconds=2)
    data = bytearray(clip.read_bytes())
    start, end = damaged_span(len(data))
    data[start:end] = bytes(end - start)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    return bad


def test_the_full_decode_rejects_a_clip_that_a_probe_and_a_poster_accept(tmp_path):
    bad = damaged_copy(tmp_path)
    decode_check(tmp_path / "good.mp4")
    assert probe_video(bad).duration == pytest.approx(2, abs=0.2)
    extract_poster(bad, tmp_path / "poster.jpg", at_seconds=0.5)  # the shallow checks pass...

    with pytest.raises(MediaError) as caught:
        decode_check(bad)  # ...the whole stream does not decode
    assert "does not decode" in str(caught.value) and "0x" not in str(caught.value)
    with pytest.raises(MediaError):
        decode_check(bad, poster=tmp_path / "checked.jpg", poster_at=0.5)  # the poster of the same pass...
    assert not (tmp_path / "checked.jpg").exists()  # ...is kept only for a clip that decodes whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.mp4", "good.mp4", "poster.jpg"]


def test_a_damaged_clip_is_downloaded_again_and_completes_when_a_whole_one_comes(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    gateway.add_fault("result", kind="damaged")

    assert download_step(render.pk) == "retry"

    render = fresh(render)
    assert render.state == State.DOWNLOADING and render.damaged_downloads == 1
    assert "damaged" in render.error and files_of(render) == []
    assert 0 < (render.next_attempt_at - timezone.now()).total_seconds() <= 60  # within minutes, not hours
    assert download_step(render.pk) == "completed"
    assert_whole(gateway, render)
    assert settles(render)[0].amount == fresh(render).billed_cost


@pytest.mark.parametrize("bill_reported", [True, False], ids=["billed", "no-bill-reported"])
def test_a_clip_damaged_every_time_fails_settled_as_billed_with_an_alert(
    gateway, owner, queue, api, settings, bill_reported
):
    settings.STUDIO_DAMAGED_DOWNLOADS = 3
    render = finished(owner, api, queue)
    if not bill_reported:  # as Sora 2's poll may: the gateway completed the clip and reported no credits
        Render.objects.filter(pk=render.pk).update(billed_cost=None, billed_credits=None)
    gateway.add_fault("result", times=3, kind="damaged")

    assert [download_step(render.pk) for _ in range(3)] == ["retry", "retry", "damaged"]

    render = fresh(render)
    assert render.state == State.FAILED and render.error_code == "damaged"
    assert "the gateway delivered a damaged file; it was billed" in render.error
    assert render.damaged_downloads == 3
    assert not render.nothing_billed
    assert open_alert(GatewayAlert.Kind.DAMAGED, render) is not None
    (settle,) = settles(render)
    assert not LedgerEntry.objects.filter(render=render, kind=LedgerKind.RELEASE).exists()
    if bill_reported:
        assert settle.amount == render.billed_cost > 0 and settle.note == ""
    else:
        assert settle.amount == render.estimated_cost > 0 and settle.note == UNREPORTED
    assert files_of(render) == []
    assert len(requests_for(gateway, render)) == 3  # bounded: not until the URL expires


# --- C: a finished clip whose file disappears ---------------------------------------------------------------


def completed(gateway, owner, queue, api) -> Render:
    render = finished(owner, api, queue)
    assert download_step(render.pk) == "completed"
    return fresh(render)


@pytest.mark.parametrize("damage", ["deleted", "wrong-size"])
def test_a_finished_clip_whose_file_went_missing_is_downloaded_again_and_settles_once(
    gateway, owner, queue, api, damage
):
    render = completed(gateway, owner, queue, api)
    finished_at = render.finished_at
    clip = Path(render.video.path)
    if damage == "deleted":
        clip.unlink()
    else:
        clip.write_bytes(clip.read_bytes()[:1000])

    assert sweep_files_now()["files_refetched"] == 1

    lost = fresh(render)
    assert lost.state == State.DOWNLOADING
    assert lost.file_note == "The clip's file went missing; it is being downloaded again from the gateway."
    assert results(queue.run(twice=True)) == ["completed", "skipped"]
    render = fresh(render)
    assert_whole(gateway, render)
    assert render.finished_at == finished_at and render.file_lost_at is None and render.file_note == ""
    assert len(settles(render)) == 1 and settles(render)[0].amount == render.billed_cost
    assert sweep_files_now()["files_refetched"] == 0


def test_a_finished_clip_lost_after_its_url_expired_is_marked_lost_and_keeps_its_bill(
    gateway, owner, queue, api
):
    render = completed(gateway, owner, queue, api)
    Render.objects.filter(pk=render.pk).update(result_expires_at=timezone.now() - timedelta(minutes=10))
    Path(render.video.path).unlink()
    before = len(gateway.file_requests())

    assert sweep_files_now()["files_lost"] == 1

    render = fresh(render)
    assert render.state == State.COMPLETED and render.file_lost_at is not None
    assert render.file_note.startswith("The clip's file is gone")
    assert "It was billed" in render.file_note
    assert open_alert(GatewayAlert.Kind.FILE_LOST, render) is not None
    assert len(settles(render)) == 1 and render.billed_cost > 0
    assert len(gateway.file_requests()) == before  # nothing fetched from an expired URL
    assert sweep_files_now()["files_lost"] == 0  # said once


def test_a_finished_clip_the_gateway_no_longer_serves_is_marked_lost(gateway, owner, queue, api):
    render = completed(gateway, owner, queue, api)
    Path(render.video.path).unlink()
    gateway.expire_results()  # revoked at the gateway long before the expiry the studio was told

    assert sweep_files_now()["files_refetched"] == 1
    assert results(queue.run()) == ["file_lost"]

    render = fresh(render)
    assert render.state == State.COMPLETED and render.file_lost_at is not None
    assert open_alert(GatewayAlert.Kind.FILE_LOST, render) is not None
    assert len(settles(render)) == 1
    assert files_of(render) == ["poster.jpg"]


def test_the_file_check_skips_clips_whose_url_expired_long_ago(gateway, owner, queue, api):
    render = completed(gateway, owner, queue, api)
    Render.objects.filter(pk=render.pk).update(result_expires_at=timezone.now() - timedelta(days=2))
    Path(render.video.path).unlink()

    assert sweep_files_now()["files_lost"] == 0
    assert fresh(render).file_lost_at is None


def test_the_file_check_judges_nothing_while_the_media_storage_is_missing(
    gateway, owner, queue, api, settings
):
    render = completed(gateway, owner, queue, api)
    Render.objects.filter(pk=render.pk).update(result_expires_at=timezone.now() - timedelta(minutes=10))
    settings.MEDIA_ROOT = str(Path(settings.MEDIA_ROOT).parent / "unmounted")

    assert sweep_files_now()["files_lost"] == 0
    assert fresh(render).file_lost_at is None


# --- D: temporary files no download owns ---------------------------------------------------------------------


def test_the_sweep_removes_temporary_files_no_running_download_owns(gateway, owner, queue, api):
    done = completed(gateway, owner, queue, api)
    idle = finished(owner, api, queue)  # downloading, no attempt holding it
    busy = finished(owner, api, queue)  # downloading, an attempt holds its lease
    Render.objects.filter(pk=busy.pk).update(lease_until=timezone.now() + timedelta(minutes=1))
    temporary = ["clip.mp4.part", ".poster-3f2a.jpg", ".download-x1y2.part", "poster.jpg.part"]
    for render in (done, idle, busy):
        render_dir(render.pk).mkdir(parents=True, exist_ok=True)
        for name in temporary:
            (render_dir(render.pk) / name).write_bytes(b"left by a killed worker")

    assert sweep_files_now()["temporary_files_removed"] == 4 + 3

    assert files_of(done) == ["clip.mp4", "poster.jpg"]
    assert files_of(idle) == ["clip.mp4.part"]  # what its next attempt resumes from
    assert files_of(busy) == sorted(temporary)


def test_a_completed_download_removes_what_killed_attempts_left_in_its_folder(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    render_dir(render.pk).mkdir(parents=True)
    (render_dir(render.pk) / ".poster-dead.jpg").write_bytes(b"x")
    (render_dir(render.pk) / ".download-old.part").write_bytes(b"x")

    assert download_step(render.pk) == "completed"
    assert_whole(gateway, render)


def test_a_worker_killed_mid_download_is_taken_up_by_the_sweep_and_resumes(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    clip = source(gateway, render)
    part_of(render).parent.mkdir(parents=True)
    part_of(render).write_bytes(clip[:5000])  # what the killed worker had written
    Render.objects.filter(pk=render.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert sweep()["downloads_revived"] == 1
    assert fresh(render).next_attempt_at is not None

    assert download_step(render.pk) == "completed"
    assert requests_for(gateway, render)[0]["range"] == "bytes=5000-"
    assert_whole(gateway, render)


def test_emulator_answers_ranges_like_a_cdn(gateway, owner, queue, api):
    render = finished(owner, api, queue)
    clip = source(gateway, render)
    url = fresh(render).result_url
    assert httpx.get(url, headers={"Range": "bytes=10-19"}).content == clip[10:20]
    tail = httpx.get(url, headers={"Range": "bytes=-5"})
    assert (tail.status_code, tail.headers["content-range"], tail.content) == (
        206,
        f"bytes {len(clip) - 5}-{len(clip) - 1}/{len(clip)}",
        clip[-5:],
    )
    past = httpx.get(url, headers={"Range": f"bytes={len(clip)}-"})
    assert (past.status_code, past.headers["content-range"]) == (416, f"bytes */{len(clip)}")
    assert httpx.get(url).content == clip
