"""Clip generation for the gateway emulator: a real H.264 MP4 made by the ffmpeg that imageio-ffmpeg ships.

The frame is `testsrc2` (or the init image, scaled to fill the frame with a slow zoom) with the prompt drawn
in a box and a small running timecode. The prompt never enters the filter string: it is written to a file
that `drawtext` reads (`textfile=`, `expansion=none`), and ffmpeg runs inside a private temp directory so
every path the filter names is a plain relative file name that needs no escaping.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import imageio_ffmpeg

from studio.media import run_ffmpeg

FONT_PATH = Path(__file__).resolve().with_name("DejaVuSans.ttf")
MAX_PROMPT_LINES = 10
DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)(;[^,;]*)*;base64,(.*)$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


RENDER_NICE = 10  # the emulator's renders stand for the gateway's GPUs: they yield to the studio's own work


class RenderError(RuntimeError):
    """ffmpeg could not produce the clip."""


def decode_data_uri(value: str) -> bytes | None:
    """The bytes of a `data:image/...;base64,` URI, or None when it is not one (or is not valid base64)."""
    match = DATA_URI.match(value.strip()) if isinstance(value, str) else None
    if not match:
        return None
    try:
        return base64.b64decode(re.sub(r"\s+", "", match.group(3)), validate=True)
    except (binascii.Error, ValueError):
        return None


def wrap_prompt(prompt: str, *, width: int, fontsize: int) -> str:
    """The prompt wrapped to fit the frame, at most MAX_PROMPT_LINES lines."""
    text = _CONTROL.sub(" ", prompt.replace("\r\n", "\n").replace("\t", " ")).strip()
    columns = max(12, int(width * 0.86 / (fontsize * 0.56)))
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, columns) or [""])
    if len(lines) > MAX_PROMPT_LINES:
        lines = lines[:MAX_PROMPT_LINES]
        lines[-1] = lines[-1][: columns - 2].rstrip() + " …"
    return "\n".join(lines) or " "


def _prepare_image(data: bytes, width: int, height: int, dest: Path) -> bool:
    """Decode an image with Pillow, scale and centre-crop it to width x height; False when impossible."""
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return False
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > 40_000_000:
                return False
            image = ImageOps.exif_transpose(opened).convert("RGB")
            fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
            fitted.save(dest, format="PNG")
    except Exception:  # noqa: BLE001 - any undecodable image falls back to the test pattern
        return False
    return True


def _fontsize(width: int, height: int) -> int:
    return max(14, min(width, height) // 24)


def build_command(
    out: str,
    *,
    width: int,
    height: int,
    duration: float,
    fps: int,
    seed: int | None,
    image: str | None,
    font: str,
    text: str,
    timecode: str,
) -> list[str]:
    """The ffmpeg argv (run with cwd = the work directory holding `font`, `text`, `timecode`, `image`)."""
    fontsize = _fontsize(width, height)
    small = max(10, min(width, height) // 40)
    frames = max(1, round(duration * fps))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if image:
        cmd += ["-i", image]
        background = (
            f"zoompan=z='1+0.12*on/{frames}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
            f":d={frames}:s={width}x{height}:fps={fps},setsar=1"
        )
    else:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration:g}"]
        background = "setsar=1"
        if seed is not None:
            background += f",hue=h={seed % 360}"
    filters = [
        background,
        (
            f"drawtext=fontfile={font}:textfile={text}:expansion=none:fontcolor=white:fontsize={fontsize}"
            f":line_spacing={fontsize // 3}:box=1:boxcolor=black@0.6:boxborderw={fontsize // 2}"
            ":x=(w-text_w)/2:y=(h-text_h)/2"
        ),
        (
            f"drawtext=fontfile={font}:textfile={timecode}:fontcolor=white:fontsize={small}"
            f":box=1:boxcolor=black@0.5:boxborderw={small // 3}:x={small}:y=h-text_h-{small}"
        ),
        "format=yuv420p",
    ]
    cmd += [
        "-vf",
        ",".join(filters),
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(fps),
        "-movflags",
        "+faststart",
        "-t",
        f"{duration:g}",
        "-f",
        "mp4",
        out,
    ]
    return cmd


def render_clip(
    out_path: str | os.PathLike,
    *,
    width: int,
    height: int,
    duration: float,
    prompt: str,
    fps: int = 24,
    seed: int | None = None,
    init_image: bytes | None = None,
    font_path: str | os.PathLike = FONT_PATH,
    timeout: float | None = None,
) -> Path:
    """Render an H.264 MP4 of `duration` seconds to `out_path` (atomically) and return its path."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError("width and height must be positive even numbers")
    if duration <= 0 or fps <= 0:
        raise ValueError("duration and fps must be positive")
    out = Path(out_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    fontsize = _fontsize(width, height)
    with tempfile.TemporaryDirectory(prefix="emurender-") as work_dir:
        work = Path(work_dir)
        shutil.copyfile(font_path, work / "font.ttf")
        wrapped = wrap_prompt(prompt, width=width, fontsize=fontsize)
        (work / "prompt.txt").write_text(wrapped, encoding="utf-8")
        label = f"bytespike emulator  {width}x{height}  %{{pts:hms}}  frame %{{n}}"
        (work / "timecode.txt").write_text(label, encoding="utf-8")
        image = None
        if init_image and _prepare_image(init_image, width, height, work / "init.png"):
            image = "init.png"
        cmd = build_command(
            str(partial),
            width=width,
            height=height,
            duration=duration,
            fps=fps,
            seed=seed,
            image=image,
            font="font.ttf",
            text="prompt.txt",
            timecode="timecode.txt",
        )
        try:
            result = run_ffmpeg(cmd, cwd=work, timeout=timeout or max(120.0, duration * 15), nice=RENDER_NICE)
        except (OSError, subprocess.TimeoutExpired) as exc:
            partial.unlink(missing_ok=True)
            raise RenderError(f"ffmpeg could not run: {exc}") from exc
        if result.returncode != 0 or not partial.exists() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
            detail = result.stderr.decode("utf-8", "replace").strip()[-500:]
            raise RenderError(f"ffmpeg exited with {result.returncode}: {detail}")
    os.replace(partial, out)
    return out
