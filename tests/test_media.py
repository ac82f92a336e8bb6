"""studio.media: probing clips, poster frames, MP4 sniffing and init-image validation."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from studio import media
from studio.media import (
    ImageInfo,
    MediaError,
    VideoInfo,
    decode_check,
    extract_poster,
    looks_like_mp4,
    probe_video,
    sniff_image,
)
from tests.conftest import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 2 s, 320x240, 12 fps H.264 MP4."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", size="320x240", seconds=2, rate=12)


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert(mode).save(buf, fmt, **save)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (with a correct CRC) claims width x height pixels."""
    data = bytearray(image_bytes("PNG", (1, 1), mode="1"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --- Video ------------------------------------------------------------------------------------------------


def test_probe_video(clip):
    info = probe_video(clip)
    assert isinstance(info, VideoInfo)
    assert info.width == 320
    assert info.height == 240
    assert info.codec == "h264"
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_probe_video_rejects_non_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(MediaError, match="not a readable video"):
        probe_video(text)


def test_probe_video_rejects_still_image(tmp_path):
    still = tmp_path / "still.png"
    still.write_bytes(image_bytes("PNG"))
    with pytest.raises(MediaError):
        probe_video(still)


def test_probe_video_missing_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")


def test_probe_video_odd_filename(clip, tmp_path):
    odd = tmp_path / "-i x, 1x1 [y].mp4"
    odd.write_bytes(clip.read_bytes())
    assert probe_video(odd).width == 320


def test_extract_poster(clip, tmp_path):
    out = tmp_path / "poster.jpg"
    extract_poster(clip, out)
    with Image.open(out) as img:
        assert img.format == "JPEG"
        assert img.size == (320, 240)
    assert [p.name for p in tmp_path.iterdir()] == ["poster.jpg"]  # no temp file left behind


def test_extract_poster_past_the_end_uses_first_frame(clip, tmp_path):
    out = tmp_path / "poster.jpg"
    out.write_bytes(b"old")
    extract_poster(clip, out, at_seconds=60)
    with Image.open(out) as img:
        assert img.format == "JPEG"
        assert img.size == (320, 240)


@pytest.mark.parametrize("at", [1.0, 60.0])  # a frame inside the clip; past its end, the first frame
def test_the_decode_check_takes_the_same_poster_as_extract_poster_in_the_same_pass(
    clip, tmp_path, at, monkeypatch
):
    real_run = media.run_ffmpeg
    alone, together = tmp_path / "alone.jpg", tmp_path / "together.jpg"
    extract_poster(clip, alone, at_seconds=at)
    together.write_bytes(b"old")

    runs = []
    monkeypatch.setattr(media, "run_ffmpeg", lambda cmd, **kw: runs.append(cmd) or real_run(cmd, **kw))

    decode_check(clip, poster=together, poster_at=at)

    assert together.read_bytes() == alone.read_bytes()
    # Inside the clip: one ffmpeg pass. Past its end the pass fails for the poster's sake, so the check runs
    # alone and passes (the clip is whole), then the poster is probed for and taken on its own.
    assert len(runs) == (1 if at < 2 else 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.jpg", "together.jpg"]  # no temp file left


def test_a_poster_that_takes_too_long_is_a_timeout_not_a_damaged_clip(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(media, "FFMPEG_TIMEOUT", 0.001)
    with pytest.raises(media.MediaTimeout):  # a download retries on a timeout; on a MediaError it refetches
        media._run_poster(clip, tmp_path / "poster.jpg", 0.5)


def test_extract_poster_of_non_video_raises(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "poster.jpg"
    with pytest.raises(MediaError):
        extract_poster(bad, out)
    assert list(tmp_path.iterdir()) == [bad]


def test_looks_like_mp4(clip):
    assert looks_like_mp4(clip.read_bytes()[:16])
    assert looks_like_mp4(b"\x00\x00\x00\x20ftypisom")
    assert not looks_like_mp4(b"<html><body>")
    assert not looks_like_mp4(b'{"error": "nope"}')
    assert not looks_like_mp4(b"\x00\x00\x00")
    assert not looks_like_mp4(b"")


# --- Images -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_sniff_image_accepts(fmt, mime):
    info = sniff_image(image_bytes(fmt, (64, 48)))
    assert info == ImageInfo(format=fmt, width=64, height=48, mime=mime)


def test_sniff_image_accepts_rgba_png_and_mpo_jpeg():
    assert sniff_image(image_bytes("PNG", mode="RGBA")).format == "PNG"
    # Phone cameras write JPEGs with multi-picture data; Pillow calls them MPO.
    buf = io.BytesIO()
    frames = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")]
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:])
    assert sniff_image(buf.getvalue()) == ImageInfo("JPEG", 40, 30, "image/jpeg")


def test_sniff_image_accepts_file_and_rewinds():
    data = image_bytes("PNG")
    f = io.BytesIO(data)
    f.seek(10)
    assert sniff_image(f).format == "PNG"
    assert f.tell() == 0
    assert f.read() == data


def test_sniff_image_accepts_django_upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("photo.gif", image_bytes("JPEG"), content_type="image/gif")
    assert sniff_image(upload).format == "JPEG"  # the name and declared type do not matter
    assert upload.tell() == 0


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (image_bytes("GIF"), "GIF"),
        (image_bytes("TIFF"), "TIFF"),
        (image_bytes("BMP"), "BMP"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b"<script>alert(1)</script></svg>",
            "SVG",
        ),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "EPS"),
    ],
    ids=["gif", "tiff", "bmp", "svg", "eps"],
)
def test_sniff_image_rejects_other_formats(data, named):
    with pytest.raises(MediaError) as excinfo:
        sniff_image(data)
    assert str(excinfo.value) == f"Init images must be PNG, JPEG or WebP (this file is {named})."


def test_sniff_image_rejects_text_named_png():
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("init.png", b"just some words\n" * 10, content_type="image/png")
    with pytest.raises(MediaError, match=r"^Init images must be PNG, JPEG or WebP \(this file is not"):
        sniff_image(upload)
    assert upload.tell() == 0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_sniff_image_rejects_truncated(fmt, keep):
    data = image_bytes(fmt, (128, 96))
    with pytest.raises(MediaError, match=r"^This image is truncated or corrupt\.$"):
        sniff_image(data[: int(len(data) * keep)])


def test_sniff_image_rejects_png_without_end_and_bad_checksum():
    data = image_bytes("PNG", (128, 96))
    assert data.endswith(b"IEND\xaeB`\x82")
    with pytest.raises(MediaError, match="truncated or corrupt"):
        sniff_image(data[:-12])  # every pixel is there, the IEND chunk is not
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    with pytest.raises(MediaError, match="truncated or corrupt"):
        sniff_image(bytes(damaged))


def test_sniff_image_rejects_header_only_png():
    with pytest.raises(MediaError, match="truncated or corrupt"):
        sniff_image(image_bytes("PNG")[:40])


def test_sniff_image_rejects_oversized_bytes_and_file():
    data = image_bytes("PNG", (64, 64)) + b"\x00" * (2 * 1024 * 1024)  # trailing junk makes it 2+ MiB
    with pytest.raises(MediaError) as excinfo:
        sniff_image(data, max_bytes=1024 * 1024)
    assert str(excinfo.value) == "This image is 2.1 MB; the limit is 1 MB."

    f = io.BytesIO(data)
    with pytest.raises(MediaError, match=r"^This image is 2\.1 MB; the limit is 1 MB\.$"):
        sniff_image(f, max_bytes=1024 * 1024)
    assert f.tell() == 0


def test_sniff_image_default_byte_limit_is_10_mib():
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * (12 * 1024 * 1024)
    with pytest.raises(MediaError, match=r"^This image is 12\.1 MB; the limit is 10 MB\.$"):
        sniff_image(data)


def test_sniff_image_rejects_decompression_bomb():
    # 900 megapixels: Pillow itself refuses to open it (DecompressionBombError).
    with pytest.raises(MediaError, match=r"^This image is 900 megapixels; the limit is 40 megapixels\.$"):
        sniff_image(png_claiming_size(30000, 30000))
    # 100 megapixels: Pillow only warns; the warning must not let it through either.
    with pytest.raises(MediaError, match=r"^This image is 100 megapixels; the limit is 89\.5 megapixels\.$"):
        sniff_image(png_claiming_size(10000, 10000), max_pixels=200_000_000)


def test_sniff_image_rejects_over_max_pixels_before_decoding():
    # 9000x5000 = 45 MP: under Pillow's own limits, over ours. Checked from the header alone.
    with pytest.raises(MediaError) as excinfo:
        sniff_image(png_claiming_size(9000, 5000))
    assert str(excinfo.value) == "This image is 9000×5000 pixels; the limit is 40 megapixels."
    assert sniff_image(image_bytes("PNG", (200, 100)), max_pixels=20_000).width == 200
    with pytest.raises(MediaError, match="the limit is 0.019 megapixels"):
        sniff_image(image_bytes("PNG", (200, 100)), max_pixels=19_000)


def test_sniff_image_rejects_empty():
    with pytest.raises(MediaError, match="empty"):
        sniff_image(b"")


def test_clip_checks_run_below_the_poller_and_web_server():
    """ffmpeg's batch work (probe, poster, full decode) runs niced, so polls and pages are answered first."""
    cmd = [
        sys.executable,
        "-c",
        "import os, time; time.sleep(0.3); print(os.getpriority(os.PRIO_PROCESS, 0))",
    ]
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert int(media.run_ffmpeg(cmd, timeout=30, nice=media.BATCH_NICE).stdout) == min(19, mine + 10)
    assert int(media.run_ffmpeg(cmd, timeout=30).stdout) == mine


def test_an_ffmpeg_run_past_its_timeout_is_killed():
    cmd = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        media.run_ffmpeg(cmd, timeout=1, nice=media.BATCH_NICE)
    child = int(raised.value.stdout)  # it told its pid before the timeout
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(child, 0)
