"""Pure helpers around video and image files: probe a clip, grab a poster frame, sniff uploads.

Nothing here touches the database. ffmpeg comes from imageio-ffmpeg (there is no ffprobe), so a
clip is probed by running ``ffmpeg -i <file>`` without an output and reading what it prints.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import imageio_ffmpeg
from PIL import Image, UnidentifiedImageError

FFMPEG_TIMEOUT = 30  # seconds, for each ffmpeg run
# Checking a downloaded clip (probe, poster, full decode) is batch work: it runs below the poller and the web
# server, whose answers someone is waiting for (see run_ffmpeg).
BATCH_NICE = 10

MIB = 1024 * 1024
DEFAULT_MAX_IMAGE_BYTES = 10 * MIB
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

# Decoded format -> (the name we report, MIME type). MPO is what Pillow calls a JPEG carrying
# multi-picture data (many phone cameras write them); the first picture is an ordinary JPEG.
_ALLOWED_IMAGE_FORMATS = {
    "PNG": ("PNG", "image/png"),
    "JPEG": ("JPEG", "image/jpeg"),
    "MPO": ("JPEG", "image/jpeg"),
    "WEBP": ("WEBP", "image/webp"),
}
# Only these Pillow plugins ever see an upload's bytes.
_PILLOW_OPENERS = ("PNG", "JPEG", "WEBP")


class MediaError(Exception):
    """A file is not a usable video or image; the message can be shown to the user."""


class MediaTimeout(MediaError):
    """ffmpeg ran out of time: the machine was too busy to tell whether the file is good."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    width: int
    height: int
    codec: str  # ffmpeg's decoder name, e.g. "h264"


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "PNG", "JPEG" or "WEBP"
    width: int
    height: int
    mime: str


# --- Video ------------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*Duration:\s*(?:(\d+):(\d{2}):(\d{2}(?:\.\d+)?)|N/A)", re.MULTILINE)
_VIDEO_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: ([A-Za-z0-9_]+)(.*)$", re.MULTILINE)
# "320x240" as its own comma-separated token; never the "0x31637661" of a codec tag.
_SIZE_RE = re.compile(r"(?:^|[\s,])(\d{1,5})x(\d{1,5})(?=[\s,\[]|$)")


def run_ffmpeg(
    cmd: list[str], *, timeout: float, nice: int = 0, cwd: Path | str | None = None
) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True), with the child `nice` steps below this process.

    Through coreutils' `nice`, which execs the command already lowered, so every thread ffmpeg starts inherits it
    (a priority set on the child after it started reaches only its first thread; a preexec_fn would force a fork
    of this threaded process). Where there is no `nice`, the command runs at this process's priority."""
    runner = shutil.which("nice") if nice else None
    argv = [runner, "-n", str(nice), *cmd] if runner else cmd
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd) as proc:  # noqa: S603
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            exc.stdout, exc.stderr = proc.communicate()  # reaped: nothing is left running
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _ffmpeg_input(path: Path) -> str:
    """An input argument ffmpeg cannot mistake for an option or another protocol."""
    return "file:" + str(Path(path).resolve())


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg printed nothing"


def probe_video(path: Path) -> VideoInfo:
    """Duration, frame size and codec of the first video stream of ``path``.

    Raises MediaError when the file is missing, unreadable, has no video stream or no duration
    (a still image, for instance, which ffmpeg would happily read as a one-frame "video").
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path.name} does not exist.")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _ffmpeg_input(path)]
    try:
        proc = run_ffmpeg(cmd, timeout=FFMPEG_TIMEOUT, nice=BATCH_NICE)
    except subprocess.TimeoutExpired as exc:
        raise MediaTimeout(f"Reading {path.name} took longer than {FFMPEG_TIMEOUT} s.") from exc
    # ffmpeg always exits non-zero here ("At least one output file must be specified"): judge by
    # what it printed.
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if "Input #0" not in stderr:
        raise MediaError(f"{path.name} is not a readable video ({_last_error_line(stderr)}).")

    duration_match = _DURATION_RE.search(stderr)
    if not duration_match or duration_match.group(1) is None:
        raise MediaError(f"{path.name} is not a readable video (it has no duration).")
    hours, minutes, seconds = duration_match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)

    for stream in _VIDEO_STREAM_RE.finditer(stderr):
        codec, rest = stream.group(1), stream.group(2)
        if "(attached pic)" in rest:  # cover art of an audio file
            continue
        size = _SIZE_RE.search(rest)
        if size and int(size.group(1)) > 0 and int(size.group(2)) > 0:
            return VideoInfo(
                duration=duration, width=int(size.group(1)), height=int(size.group(2)), codec=codec
            )
    raise MediaError(f"{path.name} is not a readable video (it has no video stream).")


def _poster_output(tmp: Path) -> list[str]:
    """ffmpeg's output options for one JPEG frame written to ``tmp``."""
    return [
        *("-frames:v", "1", "-q:v", "3", "-an", "-f", "image2", "-update", "1", "-c:v", "mjpeg"),
        str(tmp),
    ]


def _poster_temp(out: Path) -> Path:
    """An empty file beside ``out`` for a poster in the making (replaced onto ``out`` once whole)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".jpg", dir=out.parent)
    os.close(fd)
    return Path(tmp_name)


def _run_poster(video: Path, tmp: Path, at_seconds: float) -> str | None:
    """Write one JPEG frame to ``tmp``; return None on success, else ffmpeg's complaint. MediaTimeout when it took
    too long: a busy machine says nothing about the clip, which a download must not discard as damaged."""
    cmd = [
        *(imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-ss", f"{at_seconds:.3f}", "-i", _ffmpeg_input(video)),
        *_poster_output(tmp),
    ]
    try:
        proc = run_ffmpeg(cmd, timeout=FFMPEG_TIMEOUT, nice=BATCH_NICE)
    except subprocess.TimeoutExpired as exc:
        raise MediaTimeout(
            f"Taking a poster frame of {video.name} took longer than {FFMPEG_TIMEOUT} s."
        ) from exc
    if proc.returncode != 0 or tmp.stat().st_size == 0:
        return _last_error_line(proc.stderr.decode("utf-8", errors="replace"))
    return None


def extract_poster(video: Path, out: Path, at_seconds: float = 0.5) -> None:
    """Write one frame of ``video`` (at ``at_seconds``, or the first if the clip is shorter) to ``out``
    as a JPEG. ``out`` is replaced atomically; its directory must exist. Raises MediaError."""
    video, out = Path(video), Path(out)
    info = probe_video(video)
    if not (0 < at_seconds < info.duration):
        at_seconds = 0.0
    tmp = _poster_temp(out)
    try:
        problem = _run_poster(video, tmp, at_seconds)
        if problem and at_seconds > 0:
            # Seeking near the end can land after the last frame; the first frame always exists.
            problem = _run_poster(video, tmp, 0.0)
        if problem:
            raise MediaError(f"Could not take a poster frame from {video.name} ({problem}).")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


_FPS_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: .*?(\d+(?:\.\d+)?) fps", re.MULTILINE)


def _source_input(source: Path | str) -> tuple[str, str]:
    """ffmpeg's input argument for a local file or an http(s) link (an object store's pre-signed link), and a name
    for messages (never the link: it carries a signature)."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return source, "the stored clip"
    return _ffmpeg_input(Path(source)), Path(source).name


def frame_rate(source: Path | str) -> float:
    """The frame rate of the first video stream of ``source``, a file or an http(s) link (as ``ffmpeg -i`` prints
    it). Raises MediaError."""
    argument, name = _source_input(source)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", argument]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaTimeout(f"Reading {name} took longer than {FFMPEG_TIMEOUT} s.") from exc
    stderr = proc.stderr.decode("utf-8", errors="replace")
    match = _FPS_RE.search(stderr)
    if not match or float(match.group(1)) <= 0:
        raise MediaError(f"{name} is not a readable video ({_last_error_line(stderr)}).")
    return float(match.group(1))


def frame_png(video: Path | str, at_seconds: float) -> bytes:
    """The frame a player shows at ``at_seconds`` (the last one that started at or before it), as PNG bytes.

    ffmpeg's input seek lands on the first frame whose time is at or after the seek point, so the seek point is
    put just before the start of the frame on screen (frame n starts at n / fps). ``video`` is a file or an http(s)
    link (ffmpeg reads only the parts it needs from a store that answers Range). Raises MediaError.
    """
    argument, name = _source_input(video)
    fps = frame_rate(video)
    index = math.floor(at_seconds * fps + 1e-6)
    seek = max(0.0, (index - 0.1) / fps)
    cmd = [
        *(imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"),
        *("-ss", f"{seek:.6f}", "-i", argument),
        *("-frames:v", "1", "-an", "-f", "image2pipe", "-c:v", "png", "-"),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaTimeout(f"Taking a frame of {name} took longer than {FFMPEG_TIMEOUT} s.") from exc
    if proc.returncode != 0 or not proc.stdout.startswith(b"\x89PNG"):
        problem = _last_error_line(proc.stderr.decode("utf-8", errors="replace"))
        raise MediaError(f"Could not take the frame at {at_seconds:.3f} s of {name} ({problem}).")
    return proc.stdout


def decode_check(
    path: Path, timeout: float = FFMPEG_TIMEOUT, *, poster: Path | None = None, poster_at: float = 0.0
) -> None:
    """Decode every frame of every stream of ``path``, stopping at the first decoding error.

    A probe and one poster frame read the header and the first frames only; a clip damaged in the middle
    ("Invalid NAL unit size") passes both. ``-xerror`` makes ffmpeg exit non-zero on the first error, which
    it otherwise only prints. Raises MediaError (MediaTimeout when it took longer than ``timeout``).

    With ``poster``, the same pass writes the frame at ``poster_at`` seconds there, as extract_poster would: the
    frames decoded for the check are not decoded again for the poster (a fifth to a third of a download's checks).
    ``poster`` is replaced atomically, and only when the whole clip decodes. A pass that fails may have failed for
    the poster's sake (no frame at that time: the JPEG encoder then starts without one and refuses), never a
    reason to call a paid clip damaged: the check is then run alone, and the poster taken by extract_poster.
    """
    path = Path(path)
    if poster is None:
        proc = _decode(path, timeout)
        if proc.returncode != 0:
            raise MediaError(
                f"{path.name} does not decode ({_first_error(proc.stderr.decode('utf-8', 'replace'))})."
            )
        return
    tmp = _poster_temp(poster)
    try:
        # A second output: the frames before `poster_at` are dropped, the next one is written.
        proc = _decode(path, timeout, "-ss", f"{poster_at:.3f}", *_poster_output(tmp))
        if proc.returncode == 0 and tmp.stat().st_size:
            os.replace(tmp, poster)
            return
    finally:
        tmp.unlink(missing_ok=True)
    if proc.returncode != 0:  # the clip or its poster? The check alone says.
        decode_check(path, timeout)
    extract_poster(path, poster, at_seconds=poster_at)


def _decode(path: Path, timeout: float, *outputs: str) -> subprocess.CompletedProcess:
    """ffmpeg decoding all of ``path`` to nothing, and to ``outputs`` too; MediaTimeout past ``timeout``."""
    cmd = [
        *(imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-y"),
        *("-i", _ffmpeg_input(path), "-f", "null", "-", *outputs),
    ]
    try:
        return run_ffmpeg(cmd, timeout=timeout, nice=BATCH_NICE)
    except subprocess.TimeoutExpired as exc:
        raise MediaTimeout(f"Decoding {path.name} took longer than {timeout:g} s.") from exc


_CONTEXT_PREFIX = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")


def _first_error(stderr: str) -> str:
    """ffmpeg's first complaint without its "[h264 @ 0x55f5...]" prefixes: the cause, not the aftermath."""
    for line in stderr.splitlines():
        if line.strip():
            return _CONTEXT_PREFIX.sub("", line.strip())[:200]
    return "ffmpeg printed nothing"


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts an ISO base media file (MP4/MOV/...)."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


# --- Images -----------------------------------------------------------------------------------------------


def _format_mb(size: int) -> str:
    """Bytes as MB (MiB) to one decimal, rounded up so "over the limit" never prints as the limit."""
    return f"{math.ceil(size * 10 / MIB) / 10:.1f}"


def _format_limit_mb(limit: int) -> str:
    return f"{limit / MIB:g}"


def _format_megapixels(pixels: int) -> str:
    megapixels = pixels / 1_000_000
    return f"{round(megapixels, 1):g}" if megapixels >= 1 else f"{megapixels:.2g}"


def _sniff_other_format(data: bytes) -> str | None:
    """Name a file type from its magic bytes, only to word the rejection message."""
    head = data[:64]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC"
        return "a video"
    text = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return "SVG"
    return None


def _is_allowed_signature(data: bytes) -> bool:
    """The file starts like a PNG, JPEG or WebP (so if Pillow cannot read it, it is damaged)."""
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def _read_upload(data_or_file: bytes | bytearray | memoryview | IO[bytes], max_bytes: int) -> bytes:
    """The upload's bytes (at most max_bytes of them), raising MediaError when it is larger."""
    too_big = "This image is {size} MB; the limit is {limit} MB."
    if isinstance(data_or_file, bytes | bytearray | memoryview):
        data = bytes(data_or_file)
        if len(data) > max_bytes:
            raise MediaError(too_big.format(size=_format_mb(len(data)), limit=_format_limit_mb(max_bytes)))
        return data

    f = data_or_file
    try:
        declared = getattr(f, "size", None)  # Django's UploadedFile knows its size
        if isinstance(declared, int) and declared > max_bytes:
            raise MediaError(too_big.format(size=_format_mb(declared), limit=_format_limit_mb(max_bytes)))
        if hasattr(f, "seek"):
            f.seek(0)
        data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            try:
                f.seek(0, io.SEEK_END)
                size = f.tell()
            except (AttributeError, OSError, ValueError):
                size = len(data)
            raise MediaError(too_big.format(size=_format_mb(size), limit=_format_limit_mb(max_bytes)))
        return data
    finally:
        if hasattr(f, "seek"):
            f.seek(0)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> MediaError:
    return MediaError(
        f"This image is {width}×{height} pixels; the limit is {_format_megapixels(max_pixels)} megapixels."
    )


def sniff_image(
    data_or_file: bytes | bytearray | memoryview | IO[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ImageInfo:
    """Check that an uploaded init image is a whole PNG, JPEG or WebP of sensible size.

    The format is the one Pillow decodes, never the filename or the declared content type; only the
    PNG, JPEG and WebP decoders are ever given the bytes. The pixel count is checked from the header
    before any pixel is decoded, then the image is verified and fully decoded to catch truncation.
    Accepts bytes or a file-like object (a Django UploadedFile), which is rewound afterwards.
    Raises MediaError with a message fit for the user.
    """
    data = _read_upload(data_or_file, max_bytes)
    if not data:
        raise MediaError("This file is empty.")

    with warnings.catch_warnings():
        # Pillow warns (rather than raises) between MAX_IMAGE_PIXELS and twice that.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # First pass: header only, then verify() (PNG: every chunk's CRC, up to IEND).
            with Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS) as img:
                fmt = img.format or ""
                width, height = img.size
                if width * height > max_pixels:
                    raise _too_many_pixels(width, height, max_pixels)
                img.verify()
            # Second pass: decode every pixel (verify() leaves the image unusable).
            with Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS) as img:
                img.load()
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Raised by Image.open() itself, before we could read the size; Pillow's own limit may be
            # lower than max_pixels.
            pixels = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{_format_megapixels(int(pixels.group(1)))} megapixels" if pixels else "too large"
            limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
            raise MediaError(
                f"This image is {size}; the limit is {_format_megapixels(limit)} megapixels."
            ) from exc
        except UnidentifiedImageError as exc:
            if _is_allowed_signature(data):
                raise MediaError("This image is truncated or corrupt.") from exc
            other = _sniff_other_format(data)
            what = f"this file is {other}" if other else "this file is not an image we recognise"
            raise MediaError(f"Init images must be PNG, JPEG or WebP ({what}).") from exc
        except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, ...
            raise MediaError("This image is truncated or corrupt.") from exc

    if fmt not in _ALLOWED_IMAGE_FORMATS:  # cannot happen with _PILLOW_OPENERS, kept as a guard
        raise MediaError(f"Init images must be PNG, JPEG or WebP (this file is {fmt or 'unknown'}).")
    name, mime = _ALLOWED_IMAGE_FORMATS[fmt]
    return ImageInfo(format=name, width=width, height=height, mime=mime)
