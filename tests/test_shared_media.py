"""Shared media: clips, posters and init images in Django's storage, the local disk or a real S3 server.

Every test here runs twice: on the local disk (the embedded default, under the data directory) and on an
S3-compatible object store (`rclone serve s3`, the `s3` fixture in tests/conftest.py), so several web servers can
serve the same files. Files are still served only after the access check: streamed from the local disk with
Range, or by a redirect to a short-lived pre-signed link on the object store, which answers Range itself. Every
answer makes the browser ask again before reusing what it kept (issue 11): `Cache-Control: private, no-cache` with
an ETag on a stream, `no-store` on a redirect, so a member removed from the team loses the file at once.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.config import Config
from django.core.checks import run_checks
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from studio import access, storage
from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.lifecycle.download import download_step, render_dir
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import FILE_CHECK_LEASE, TEMP_SWEEP_LEASE, sweep
from studio.models import AT_GATEWAY, Lease, Membership, Render, State
from studio.settings import s3_storage
from tests.conftest import fresh, make_clip, poll_until, wait_for
from tests.fixtures import SHORT_PRO, client_for, make_render

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["local", "s3"])
def backend(request, media):
    """Where the studio keeps its files in this test: "local" (MEDIA_ROOT) or "s3" (a fresh bucket)."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    assert storage.is_local() == (request.param == "local")
    return request.param


# --- helpers ---------------------------------------------------------------------------------------------------


def stored(name: str) -> bytes:
    """The stored file's bytes, read back through the storage."""
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def stored_names(render: Render) -> list[str]:
    """The names the storage holds under the render's folder."""
    _, files = default_storage.listdir(f"renders/{render.pk}")
    return sorted(files)


def with_files(owner, tmp_path, seconds: float = 2, **fields) -> Render:
    """A finished render whose clip and poster were put in the storage as a download puts them."""
    render = make_render(owner, **fields)
    clip = make_clip(tmp_path / "made" / "clip.mp4", seconds=seconds)
    poster = tmp_path / "made" / "poster.jpg"
    poster.write_bytes(b"\xff\xd8\xff\xe0 a poster frame")
    size = clip.stat().st_size
    storage.put_file(f"renders/{render.pk}/clip.mp4", clip)
    storage.put_file(f"renders/{render.pk}/poster.jpg", poster)
    Render.objects.filter(pk=render.pk).update(
        video=f"renders/{render.pk}/clip.mp4", poster=f"renders/{render.pk}/poster.jpg", video_bytes=size
    )
    return fresh(render)


def fetch(client, url: str, **headers) -> tuple[int, dict, bytes]:
    """GET a file the way a browser does: through the studio, then (object store) the pre-signed link it
    redirects to. Returns the final status, headers and body."""
    response = client.get(url, headers=headers)
    if response.status_code != 302:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, body
    assert response["Cache-Control"] == "private, no-store"  # a redirect is never reused
    link = response["Location"]
    assert urlsplit(link).scheme == "http" and "X-Amz-Signature=" in link  # pre-signed, on the object store
    followed = httpx.get(link, headers=headers)
    return followed.status_code, {k.lower(): v for k, v in followed.headers.items()}, followed.content


def finished(user, api, queue) -> Render:
    """A render whose clip is ready at the gateway; its queued download is dropped for the test to drive."""
    form = RenderForm(SHORT_PRO)
    assert form.is_valid(), form.errors
    render = do_submit_render(user, form.order())
    assert submit_step(render.pk, api) == "submitted"
    render = poll_until(fresh(render), api, lambda r: r.state not in AT_GATEWAY)
    assert render.state == State.DOWNLOADING, render.error
    queue.pending()
    return render


def sweep_files_now() -> dict:
    Lease.objects.filter(name__in=[FILE_CHECK_LEASE, TEMP_SWEEP_LEASE]).delete()
    return sweep()


# --- a render's files land in the storage ------------------------------------------------------------------------


def test_a_finished_render_puts_its_clip_and_poster_in_the_storage(
    backend, gateway, owner, queue, api, s3_keys
):
    render = finished(owner, api, queue)

    assert download_step(render.pk) == "completed"

    render = fresh(render)
    assert render.state == State.COMPLETED, render.error
    source = (gateway.clips_dir / f"{render.gateway_task_id}.mp4").read_bytes()
    assert render.video.name == f"renders/{render.pk}/clip.mp4"
    assert stored(render.video.name) == source and render.video_bytes == len(source)
    assert stored(render.poster.name)[:3] == b"\xff\xd8\xff"  # a JPEG frame
    assert stored_names(render) == ["clip.mp4", "poster.jpg"]  # no partial file was ever stored
    if backend == "s3":
        assert s3_keys() == [f"renders/{render.pk}/clip.mp4", f"renders/{render.pk}/poster.jpg"]
        assert not render_dir(render.pk).exists()  # the worker's scratch copy is gone


@pytest.fixture
def s3_keys(request, backend):
    """The keys in this test's bucket, as the object store's own folder shows them (empty on the local disk)."""

    def keys() -> list[str]:
        if backend != "s3":
            return []
        store = request.getfixturevalue("s3")
        return store.keys(store.bucket)

    return keys


# --- playing it, behind the access check -------------------------------------------------------------------------


def test_the_detail_page_plays_the_clip_for_its_author_and_never_for_an_outsider(
    backend, owner, outsider, tmp_path
):
    render = with_files(owner, tmp_path)
    author = client_for(owner)
    page = author.get(f"/renders/{render.pk}/detail/")
    assert page.status_code == 200
    video_url, poster_url = f"/renders/{render.pk}/video.mp4", f"/renders/{render.pk}/poster.jpg"
    assert f'src="{video_url}"' in page.content.decode()

    status, headers, body = fetch(author, video_url)
    assert status == 200 and body == stored(render.video.name)
    assert headers["content-type"] == "video/mp4" and headers["cache-control"] == "private, no-cache"
    status, _, body = fetch(author, poster_url)
    assert status == 200 and body == stored(render.poster.name)

    stranger = client_for(outsider)
    for url in (video_url, poster_url, f"{video_url}?download=1"):
        assert stranger.get(url).status_code == 404
        assert stranger.get(url, headers={"Range": "bytes=0-99"}).status_code == 404


def test_the_clip_answers_a_range_so_the_player_can_seek(backend, owner, tmp_path):
    render = with_files(owner, tmp_path)
    whole = stored(render.video.name)

    status, headers, body = fetch(client_for(owner), f"/renders/{render.pk}/video.mp4", Range="bytes=100-299")

    assert body == whole[100:300]
    assert headers["content-range"] == f"bytes 100-299/{len(whole)}"
    # The studio answers 206. Real S3 does too; rclone's S3 server answers a ranged pre-signed GET with 200 and
    # the same Content-Range and slice (STACK-NOTES).
    assert status == 206 if backend == "local" else status in (200, 206)


def test_a_download_link_names_the_file(backend, owner, tmp_path):
    render = with_files(owner, tmp_path)
    status, headers, _ = fetch(client_for(owner), f"/renders/{render.pk}/video.mp4?download=1")
    assert status == 200
    assert headers["content-disposition"] == f'attachment; filename="studio-sora2-{str(render.pk)[:8]}.mp4"'


# --- init images -----------------------------------------------------------------------------------------------


def test_an_init_image_goes_into_the_storage_and_back_out_to_the_gateway(
    backend, gateway, owner, api, queue, s3_keys
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.test_forms import image_bytes

    image = image_bytes("PNG")
    form = RenderForm(SHORT_PRO, {"init_image": SimpleUploadedFile("holiday.png", image, "image/png")})
    assert form.is_valid(), form.errors
    render = do_submit_render(owner, form.order())

    assert render.init_image.name == f"renders/{render.pk}/init.png"
    assert stored(render.init_image.name) == image
    if backend == "s3":
        assert s3_keys() == [f"renders/{render.pk}/init.png"]
    # The signed link the gateway may be given answers the same bytes, without a login.
    link = Client().get(access.init_image_path(render))
    assert link.status_code == 200 and link["Content-Type"] == "image/png"
    assert b"".join(link.streaming_content) == image
    # Submitting reads it back out of the storage and sends it.
    assert submit_step(render.pk, api) == "submitted"
    sent = gateway.store.inputs_dir / f"{fresh(render).gateway_task_id}.img"
    assert sent.read_bytes() == image


# --- the lost-file check looks in the storage -----------------------------------------------------------------


def test_the_sweep_sees_a_deleted_file_and_downloads_it_again(backend, gateway, owner, queue, api):
    render = finished(owner, api, queue)
    assert download_step(render.pk) == "completed"
    render = fresh(render)
    default_storage.delete(render.video.name)
    assert storage.stored_size(render.video.name) is None

    assert sweep_files_now()["files_refetched"] == 1
    assert [result for task, result in queue.run() if task == "download_render"] == ["completed"]

    render = fresh(render)
    assert render.state == State.COMPLETED and render.file_lost_at is None
    assert storage.stored_size(render.video.name) == render.video_bytes
    assert sweep_files_now()["files_refetched"] == 0


def test_a_deleted_file_whose_link_expired_is_marked_lost(backend, gateway, owner, queue, api):
    render = finished(owner, api, queue)
    assert download_step(render.pk) == "completed"
    render = fresh(render)
    Render.objects.filter(pk=render.pk).update(result_expires_at=timezone.now() - timedelta(minutes=10))
    default_storage.delete(render.video.name)

    assert sweep_files_now()["files_lost"] == 1
    assert fresh(render).file_lost_at is not None


def test_the_file_check_judges_nothing_while_the_object_store_is_down(
    s3, gateway, owner, queue, api, settings
):
    render = finished(owner, api, queue)
    assert download_step(render.pk) == "completed"
    Render.objects.filter(pk=render.pk).update(result_expires_at=timezone.now() - timedelta(minutes=10))
    # The same bucket at an address nothing listens on (the discard port), tried once.
    down = s3_storage({**settings.STUDIO_S3, "endpoint_url": "http://127.0.0.1:9"}, 60)
    config = down["OPTIONS"]["client_config"]
    down["OPTIONS"]["client_config"] = config.merge(Config(retries={"max_attempts": 1}, connect_timeout=1))
    settings.STORAGES = {**settings.STORAGES, "default": down}

    checked = sweep_files_now()
    assert checked["files_lost"] == 0 and checked["files_refetched"] == 0
    assert fresh(render).file_lost_at is None


def test_a_checked_clip_the_store_refused_is_put_again_after_its_link_expired(
    s3, gateway, owner, queue, api, settings
):
    """Paid and whole on the worker's disk, only the object store was down: it is never left to expire."""
    render = finished(owner, api, queue)
    working = settings.STORAGES
    down = s3_storage({**settings.STUDIO_S3, "endpoint_url": "http://127.0.0.1:9"}, 60)
    config = down["OPTIONS"]["client_config"]
    down["OPTIONS"]["client_config"] = config.merge(Config(retries={"max_attempts": 1}, connect_timeout=1))
    settings.STORAGES = {**working, "default": down}
    assert download_step(render.pk) == "retry"
    assert "storage error" in fresh(render).error

    # The store comes back after the gateway's link has expired.
    settings.STORAGES = working
    Render.objects.filter(pk=render.pk).update(
        result_expires_at=timezone.now() - timedelta(minutes=1), next_attempt_at=timezone.now()
    )
    assert download_step(render.pk) == "completed"
    render = fresh(render)
    assert render.state == State.COMPLETED and render.billed_cost == render.estimated_cost
    assert stored_names(render) == ["clip.mp4", "poster.jpg"]


# --- issue 11: files are re-checked on every use --------------------------------------------------------------


def test_a_streamed_file_is_kept_only_with_revalidation_and_answers_304_when_unchanged(
    media, owner, tmp_path
):
    render = with_files(owner, tmp_path)
    author = client_for(owner)
    for url in (f"/renders/{render.pk}/video.mp4", f"/renders/{render.pk}/poster.jpg"):
        first = author.get(url)
        assert first.status_code == 200
        assert first["Cache-Control"] == "private, no-cache"
        etag = first["ETag"]

        again = author.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again["ETag"] == etag and again.content == b""
        assert again["Cache-Control"] == "private, no-cache"
        assert author.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_a_member_removed_from_the_team_gets_404_on_the_next_request_even_with_if_none_match(
    backend, owner, teammate, team, tmp_path
):
    render = with_files(owner, tmp_path, team=team)
    tom = client_for(teammate)
    url = f"/renders/{render.pk}/video.mp4"
    first = tom.get(url)
    assert first.status_code == (200 if backend == "local" else 302)
    etag = first.get("ETag", '"any"')

    Membership.objects.filter(team=team, user=teammate).delete()

    for path in (url, f"/renders/{render.pk}/poster.jpg"):
        assert tom.get(path, headers={"If-None-Match": etag}).status_code == 404
        assert tom.get(path, headers={"If-None-Match": "*"}).status_code == 404


# --- configuration ------------------------------------------------------------------------------------------------


def studio_checks(
    ids: tuple[str, ...] = ("studio.E030", "studio.E031", "studio.E032", "studio.W030"),
) -> set[str]:
    return {message.id for message in run_checks() if message.id in ids}


def test_an_incomplete_object_store_configuration_fails_the_checks(settings):
    base = {"named": [], "bucket": "", "endpoint_url": "", "access_key": "", "secret_key": ""}
    settings.STUDIO_S3 = {
        **base,
        "named": ["STUDIO_S3_ENDPOINT_URL"],
        "endpoint_url": "http://127.0.0.1:9000",
    }
    assert studio_checks() == {"studio.E030"}  # an endpoint without a bucket: files would stay local
    settings.STUDIO_S3 = {**base, "bucket": "clips", "access_key": "AKIA"}
    assert studio_checks() == {"studio.E031"}  # half a key pair
    settings.STUDIO_S3 = {**base, "bucket": "clips"}
    assert studio_checks() == {"studio.W030"}  # no keys: boto3 must find some itself
    settings.STUDIO_S3 = {**base, "bucket": "clips", "access_key": "AKIA", "secret_key": "s3cr3t"}
    assert studio_checks() == set()
    settings.STUDIO_MEDIA_URL_SECONDS = 0
    assert studio_checks() == {"studio.E032"}


def test_the_object_store_is_chosen_from_the_environment(monkeypatch, tmp_path):
    from tests.test_settings import load_settings  # each variable's strict parsing is tested there

    local = load_settings(monkeypatch, tmp_path)
    assert local["STORAGES"]["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"

    env = {
        "STUDIO_S3_BUCKET": "studio-media",
        "STUDIO_S3_ENDPOINT_URL": "https://objects.example.com:9000/",
        "STUDIO_S3_ACCESS_KEY_ID": "studio",
        "STUDIO_S3_SECRET_ACCESS_KEY": "s3cr3t",
        "STUDIO_S3_PREFIX": "/prod/",
    }
    chosen = load_settings(monkeypatch, tmp_path, env)
    options = chosen["STORAGES"]["default"]["OPTIONS"]
    assert chosen["STORAGES"]["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert options["bucket_name"] == "studio-media" and options["location"] == "prod"
    assert options["endpoint_url"] == "https://objects.example.com:9000"
    assert options["client_config"].s3 == {"addressing_style": "path"}
    assert options["client_config"].request_checksum_calculation == "when_required"
    assert options["querystring_expire"] == 300
    assert "https://objects.example.com:9000" in chosen["SECURE_CSP"]["media-src"]


# --- a worker process and a web process share the store --------------------------------------------------------


@pytest.mark.cluster
def test_a_cluster_configured_from_the_environment_stores_what_this_web_process_serves(
    s3, cluster, owner, outsider, settings
):
    """The worker is another process configured only by STUDIO_S3_*, as one on another machine would be: the clip
    it downloads reaches this web process through the store, and no copy stays on the worker's disk."""
    cluster.env.update(
        STUDIO_S3_BUCKET=s3.bucket,
        STUDIO_S3_ENDPOINT_URL=s3.endpoint_url,
        STUDIO_S3_ACCESS_KEY_ID=settings.STUDIO_S3["access_key"],
        STUDIO_S3_SECRET_ACCESS_KEY=settings.STUDIO_S3["secret_key"],
    )
    cluster.start()
    form = RenderForm(SHORT_PRO)
    assert form.is_valid(), form.errors
    render = do_submit_render(owner, form.order())

    def completed():
        """the render completed"""
        render.refresh_from_db()
        return render.state == State.COMPLETED

    wait_for(completed, timeout=120)
    assert s3.keys(s3.bucket) == [f"renders/{render.pk}/clip.mp4", f"renders/{render.pk}/poster.jpg"]

    def scratch_removed():
        """the worker removed its scratch folder (it does so just after marking the render completed)"""
        return not render_dir(render.pk).exists()  # the cluster's media folder (this test's MEDIA_ROOT too)

    wait_for(scratch_removed, timeout=30)
    status, headers, body = fetch(client_for(owner), f"/renders/{render.pk}/video.mp4")
    assert status == 200 and len(body) == render.video_bytes and headers["content-type"] == "video/mp4"
    assert client_for(outsider).get(f"/renders/{render.pk}/video.mp4").status_code == 404
