"""A standalone emulator of the bytespike video gateway: both documented protocols over real HTTP.

- "OpenAI Video" (`sora2`, `Authorization: Bearer`): POST /v1/videos/generations,
  GET /v1/videos/tasks/{id}, POST /v1/videos/tasks/{id}/cancel (assumed path).
- tasks API (`sora-2-pro`, `x-api-key`): POST /v1/tasks/submit, GET /v1/tasks/query?task_id=,
  POST /v1/tasks/cancel (assumed path).
- Pre-signed results: GET /files/{task_id}.mp4?expires=&sig= (no credential; 403 once expired or tampered).
- Test controls (no auth): POST/DELETE /_emulator/faults, GET /_emulator/health,
  POST /_emulator/expire-results, GET /_emulator/tasks/{id}.

Pure Python + stdlib + imageio-ffmpeg: nothing here imports Django. A task's status is derived from the clock
(queued for Q seconds, then running for R seconds, both divided by `speed`) and from whether its clip file is
ready; the clip is rendered by ffmpeg in a small thread pool from the moment the task is submitted.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import http.server
import json
import logging
import math
import os
import re
import secrets
import socket
import socketserver
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeGuard, overload
from urllib.parse import parse_qs, urlsplit

from . import video

log = logging.getLogger("studio.emulator")

SORA2 = "sora2"
PRO = "sora-2-pro"
OPENAI = "openai"
TASKS = "tasks"

SORA2_RATE = 0.10  # credits per generated second
PRO_RATE_1080P = 0.23125  # the Pro page's example: 8 s at 1080p = 1.85 credits
PRO_RATE_720P = round(PRO_RATE_1080P * 0.6, 6)  # 0.13875
SORA2_DURATIONS = (5, 10, 15)
SORA2_SIZES = ("1280x720", "1920x1080")
PRO_RESOLUTIONS = ("720p", "1080p")
PRO_ASPECTS = ("16:9", "9:16", "1:1")
PRO_STYLES = ("cinematic", "anime", "documentary", "none")
PRO_FRAMES = {
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("720p", "1:1"): (720, 720),
}
MAX_PROMPT = 4000
MAX_BODY = 32 * 1024 * 1024
MAX_RENDERS = 2
FILE_CHUNK = 64 * 1024
TERMINAL = ("completed", "failed", "cancelled")

FAULT_OPS = ("submit", "poll", "task", "result", "cancel")
FAULT_KINDS = {
    "submit": ("hang", "drop"),
    "poll": ("slow", "malformed", "status"),
    "task": (),
    "result": ("truncate", "wrong_type", "redirect"),
    "cancel": (),
}
ERROR_CODES = {
    400: ("invalid_request", "The request is invalid."),
    401: ("unauthorized", "The API key is missing or invalid."),
    402: ("insufficient_credits", "The wallet has insufficient credits for this request."),
    403: ("forbidden", "The API key does not have the scope for this request."),
    404: ("not_found", "The requested resource was not found."),
    405: ("method_not_allowed", "The method is not allowed for this path."),
    409: ("conflict", "The request conflicts with the task's state."),
    413: ("payload_too_large", "The request body is too large."),
    429: ("rate_limited", "Too many requests; slow down."),
    451: ("prompt_blocked", "The prompt was blocked by upstream safety."),
    500: ("internal_error", "The gateway had an internal error."),
    502: ("bad_gateway", "The upstream model provider returned an invalid response."),
    503: ("service_unavailable", "The gateway is temporarily unavailable."),
    501: ("not_implemented", "The method is not supported."),
    504: ("gateway_timeout", "The upstream model provider timed out."),
}
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    speed: float = 1.0  # divides all timings
    blocked_words: tuple[str, ...] = ("gore", "forbidden", "nsfw")  # case-insensitive whole words -> 451
    api_key: str | None = None  # if set, the credential must equal it; else any non-empty one is accepted
    url_ttl_seconds: float = 86400.0  # result URL lifetime (wall clock, not scaled by speed)
    data_dir: Path | None = None  # where clips and tasks.json live; None = a fresh temp dir
    fps: int = 24
    bill_factor: float = 1.0  # billed credits = estimate * bill_factor (a live rate drifting)


class ApiError(Exception):
    """An error answer: status, snake_case code, a sentence, optional extra error fields and headers."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ) -> None:
        default_code, default_message = ERROR_CODES.get(status, ("error", f"The gateway answered {status}."))
        super().__init__(message or default_message)
        self.status = status
        self.code = code or default_code
        self.message = message or default_message
        self.headers: dict[str, str] = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, extra={"param": param})


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with a Z, to the second (as the vendor pages show)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jitter(task_id: str, salt: str) -> float:
    """A deterministic factor in [0.85, 1.15] from the task id."""
    digest = hashlib.sha256(f"{salt}:{task_id}".encode()).digest()
    return 0.85 + 0.30 * (int.from_bytes(digest[:4], "big") / 0xFFFFFFFF)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# --- validation -------------------------------------------------------------------------------------------


def _check_model(body: dict, expected: str) -> None:
    model = body.get("model")
    if model is None:
        raise invalid("model", f'model is required and must be "{expected}"')
    if model != expected:
        raise invalid("model", f'model must be "{expected}" on this endpoint')


def _check_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("prompt", "prompt is required")
    if not isinstance(prompt, str):
        raise invalid("prompt", "prompt must be a string")
    if not prompt.strip():
        raise invalid("prompt", "prompt must not be empty")
    if len(prompt) > MAX_PROMPT:
        raise invalid("prompt", f"prompt must be at most {MAX_PROMPT} characters")
    return prompt


@overload
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: str) -> str: ...
@overload
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: None) -> str | None: ...
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, f"{field} must be one of {', '.join(choices)}")
    return value


def _check_image(body: dict, field: str) -> tuple[str | None, bytes | None]:
    """(kind, decoded bytes) of an optional image field: kind is "url" or "data"; bytes only for data URIs."""
    value = body.get(field)
    if value is None:
        return None, None
    message = f"{field} must be an http(s) URL or a data:image/...;base64, URI"
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, message)
    value = value.strip()
    if value.lower().startswith("data:"):
        data = video.decode_data_uri(value)
        if not data:
            raise invalid(field, message)
        return "data", data
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid(field, message)
    return "url", None


def validate_sora2(body: dict) -> dict:
    _check_model(body, SORA2)
    prompt = _check_prompt(body)
    duration = body.get("duration_seconds")
    if duration is None:
        raise invalid("duration_seconds", "duration_seconds is required and must be one of 5, 10, 15")
    if not _is_int(duration) or duration not in SORA2_DURATIONS:
        raise invalid("duration_seconds", "duration_seconds must be one of 5, 10, 15")
    size = _check_choice(body, "size", SORA2_SIZES, "1280x720")
    image_kind, image = _check_image(body, "source_image")
    width, height = (int(n) for n in size.split("x"))
    return {
        "protocol": OPENAI,
        "model": SORA2,
        "prompt": prompt,
        "params": {"duration_seconds": duration, "size": size, "source_image": image_kind},
        "duration": duration,
        "width": width,
        "height": height,
        "seed": None,
        "rate": SORA2_RATE,
        "image": image,
    }


def validate_pro(body: dict) -> dict:
    _check_model(body, PRO)
    prompt = _check_prompt(body)
    duration = body.get("duration_seconds")
    if duration is None:
        raise invalid("duration_seconds", "duration_seconds is required and must be an integer from 1 to 20")
    if not _is_int(duration) or not 1 <= duration <= 20:
        raise invalid("duration_seconds", "duration_seconds must be an integer from 1 to 20")
    resolution = _check_choice(body, "resolution", PRO_RESOLUTIONS, "1080p")
    aspect = _check_choice(body, "aspect_ratio", PRO_ASPECTS, "16:9")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**32):
        raise invalid("seed", "seed must be an integer from 0 to 4294967295")
    style = _check_choice(body, "style_preset", PRO_STYLES, None)
    image_kind, image = _check_image(body, "image_init")
    width, height = PRO_FRAMES[(resolution, aspect)]
    return {
        "protocol": TASKS,
        "model": PRO,
        "prompt": prompt,
        "params": {
            "duration_seconds": duration,
            "resolution": resolution,
            "aspect_ratio": aspect,
            "seed": seed,
            "style_preset": style,
            "image_init": image_kind,
        },
        "duration": duration,
        "width": width,
        "height": height,
        "seed": seed,
        "rate": PRO_RATE_1080P if resolution == "1080p" else PRO_RATE_720P,
        "image": image,
    }


# --- the emulator -----------------------------------------------------------------------------------------


class Emulator:
    """The gateway emulator. `start()` serves in a daemon thread; `serve_forever()` in the foreground."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        if self.config.speed <= 0:
            raise ValueError("speed must be positive")
        self._lock = threading.RLock()
        self._tasks: dict[str, dict] = {}
        self._faults: dict[str, deque] = {op: deque() for op in FAULT_OPS}
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        # A monotonic wall clock: immune to clock steps while the process runs.
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        if self.config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bytespike-emulator-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = Path(self.config.data_dir)
        self.clips_dir = self.data_dir / "clips"
        self.inputs_dir = self.data_dir / "inputs"
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        self._state_path = self.data_dir / "tasks.json"
        words = [w.strip() for w in self.config.blocked_words if w and w.strip()]
        self._blocked = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
            if words
            else None
        )
        self._secret = secrets.token_bytes(32)
        self._submissions = 0
        self._load()

    # --- lifecycle ----------------------------------------------------------------------------------------

    def bind(self) -> Emulator:
        """Bind the listening socket (idempotent) and resume renders of tasks loaded from disk."""
        self._bound()
        return self

    def _bound(self) -> _Server:
        """The listening server, bound (and the renders of loaded tasks resumed) on the first call."""
        if self._httpd is None:
            self._httpd = _Server((self.config.host, self.config.port), _Handler)
            self._httpd.emulator = self
            self._executor = ThreadPoolExecutor(max_workers=MAX_RENDERS, thread_name_prefix="emulator-render")
            self._resume_renders(self._executor)
        return self._httpd

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not bound yet; call start() or bind()")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0"):  # noqa: S104 - a label, not a bind
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        httpd = self._bound()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator-http", daemon=True
        )
        self._thread.start()
        log.info("Gateway emulator listening on %s", self.base_url)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until KeyboardInterrupt (or SystemExit from a signal handler)."""
        httpd = self._bound()
        try:
            httpd.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._shutdown(serving_here=True)

    def stop(self) -> None:
        self._shutdown(serving_here=False)

    def _shutdown(self, *, serving_here: bool) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._httpd is not None:
            if not serving_here and self._thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # keep-alive connections would otherwise go on being served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Emulator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- public helpers -----------------------------------------------------------------------------------

    @property
    def submissions(self) -> int:
        with self._lock:
            return self._submissions

    def add_fault(self, op: str, times: int = 1, **spec) -> None:
        """Queue a fault consumed by the next `times` matching requests (FIFO per op)."""
        if op not in FAULT_OPS:
            raise ValueError(f"unknown fault op {op!r}; expected one of {', '.join(FAULT_OPS)}")
        if not _is_int(times) or times < 1:
            raise ValueError("times must be a positive integer")
        kind = spec.get("kind")
        status = spec.get("status")
        if op == "task":
            if spec.get("outcome", "fail") != "fail":
                raise ValueError('the only task outcome is "fail"')
        elif kind is not None:
            if kind not in FAULT_KINDS[op]:
                raise ValueError(f"unknown {op} fault kind {kind!r}")
        elif not _is_int(status) or not 100 <= status <= 599:
            raise ValueError(f"a {op} fault needs status=<int> or kind=<one of {FAULT_KINDS[op]}>")
        with self._lock:
            self._faults[op].append({"spec": dict(spec), "remaining": times})

    def clear_faults(self) -> None:
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    def pending_faults(self) -> dict[str, int]:
        with self._lock:
            return {op: sum(f["remaining"] for f in q) for op, q in self._faults.items() if q}

    def task(self, task_id: str) -> dict:
        """A copy of the task record plus its derived status, progress, credits and times (unix seconds)."""
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None:
                raise KeyError(task_id)
            now = self.now()
            view = self._view(record, now)
            out = copy.deepcopy(record)
        out.update(view)
        return out

    def tasks(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def expire_results(self) -> None:
        """Expire the result URL of every task that exists now (403 from now on, even for URLs issued when
        such a task completes later); tasks submitted afterwards get normal URLs."""
        with self._lock:
            now = self.now()
            for record in self._tasks.values():
                if record.get("expired_at") is None:
                    record["expired_at"] = now - 1
            self._save()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0)

    # --- state --------------------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self._state_path.exists():
            self._save()
            return
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot read emulator state {self._state_path}: {exc}") from exc
        self._secret = bytes.fromhex(state.get("secret") or self._secret.hex())
        self._tasks = dict(state.get("tasks") or {})
        self._submissions = int(state.get("submissions", len(self._tasks)))

    def _save(self) -> None:
        """Write tasks.json atomically (callers hold the lock)."""
        state = {
            "version": 1,
            "secret": self._secret.hex(),
            "submissions": self._submissions,
            "tasks": self._tasks,
        }
        tmp = self._state_path.with_name(f".tasks.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self._state_path)
        except OSError as exc:  # e.g. the temp data dir was removed by stop() under a hung request
            log.warning("Could not save emulator state: %s", exc)
            tmp.unlink(missing_ok=True)

    def _clip_path(self, task_id: str) -> Path:
        return self.clips_dir / f"{task_id}.mp4"

    def _resume_renders(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            for task_id, record in self._tasks.items():
                if record.get("cancelled_at") is not None or record.get("render_error"):
                    continue
                clip = self._clip_path(task_id)
                if clip.exists():  # clips are written atomically: an existing one is complete
                    if record.get("file_ready_at") is None:
                        record["file_ready_at"] = max(record["submitted_at"], clip.stat().st_mtime)
                    continue
                record["file_ready_at"] = None
                executor.submit(self._render, task_id)
            self._save()

    def _create_task(self, spec: dict, fail: dict | None) -> dict:
        """Create, persist and start rendering a task (the caller has validated `spec`)."""
        prefix = "vid_" if spec["protocol"] == OPENAI else "task_"
        task_id = prefix + secrets.token_hex(12)
        speed = self.config.speed
        duration = spec["duration"]
        if spec["model"] == SORA2:
            queue_s, run_s = 2.0, 6.0 + 0.5 * duration
        else:
            queue_s = 3.0
            run_s = 8.0 + 0.6 * duration * (1.5 if spec["params"]["resolution"] == "1080p" else 1.0)
        queue_s = queue_s * _jitter(task_id, "queue") / speed
        run_s = run_s * _jitter(task_id, "run") / speed
        now = self.now()
        estimate = round(duration * spec["rate"], 4)
        record = {
            "task_id": task_id,
            "protocol": spec["protocol"],
            "model": spec["model"],
            "prompt": spec["prompt"],
            "params": spec["params"],
            "duration_seconds": duration,
            "width": spec["width"],
            "height": spec["height"],
            "seed": spec["seed"],
            "rate": spec["rate"],
            "estimated_credits": estimate,
            "billed_credits": round(estimate * self.config.bill_factor, 4),
            "submitted_at": now,
            "queued_seconds": queue_s,
            "running_seconds": run_s,
            "running_at": now + queue_s,
            "finishes_at": now + queue_s + run_s,
            "file_ready_at": None,
            "render_error": None,
            "fail": fail,
            "cancelled_at": None,
            "cancel_credits": None,
            "expired_at": None,
            "has_init_image": spec["image"] is not None,
        }
        with self._lock:
            if spec["image"] is not None:
                (self.inputs_dir / f"{task_id}.img").write_bytes(spec["image"])
            self._tasks[task_id] = record
            self._submissions += 1
            self._save()
            if self._executor is not None and not self._stopped:
                self._executor.submit(self._render, task_id)
        return record

    def _render(self, task_id: str) -> None:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record.get("cancelled_at") is not None or self._stopped:
                return
            job = dict(record)
        image_path = self.inputs_dir / f"{task_id}.img"
        image = image_path.read_bytes() if job.get("has_init_image") and image_path.exists() else None
        error = None
        try:
            video.render_clip(
                self._clip_path(task_id),
                width=job["width"],
                height=job["height"],
                duration=job["duration_seconds"],
                prompt=job["prompt"],
                fps=self.config.fps,
                seed=job.get("seed"),
                init_image=image,
            )
        except Exception as exc:  # noqa: BLE001 - any failure is a render_error on the task
            log.warning("Render of %s failed: %s", task_id, exc)
            error = str(exc)[:300] or type(exc).__name__
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None:
                return
            if error is not None:
                record["render_error"] = error
                record["render_failed_at"] = self.now()
            elif record.get("cancelled_at") is not None:
                self._clip_path(task_id).unlink(missing_ok=True)
            else:
                record["file_ready_at"] = self.now()
            self._save()

    def _status(self, record: dict, now: float) -> tuple[str, float]:
        """(status, fraction of the running phase elapsed) at wall time `now`."""
        if record.get("cancelled_at") is not None:
            return "cancelled", 0.0
        if record.get("render_error") and now >= record["submitted_at"]:
            return "failed", 0.0
        if now < record["running_at"]:
            return "queued", 0.0
        fraction = min(1.0, (now - record["running_at"]) / max(record["running_seconds"], 1e-9))
        if now < record["finishes_at"]:
            return "running", fraction
        if record.get("fail"):
            return "failed", 1.0
        if record.get("file_ready_at") is None:
            return "running", 1.0
        return "completed", 1.0

    def _view(self, record: dict, now: float) -> dict:
        """The derived, protocol-independent view of a task."""
        status, fraction = self._status(record, now)
        progress = {"queued": 0, "running": min(99, int(99 * fraction)), "completed": 100}.get(status, 0)
        if status == "cancelled":
            progress = record.get("cancel_progress", 0)
        credits = None
        error = None
        completed_at = None
        expires_at = None
        if status == "completed":
            credits = record["billed_credits"]
            completed_at = max(record["finishes_at"], record["file_ready_at"])
            expires_at = completed_at + self.config.url_ttl_seconds
            if record.get("expired_at") is not None:
                expires_at = min(expires_at, record["expired_at"])
        elif status == "failed":
            credits = 0.0
            if record.get("render_error"):
                error = {"code": "render_error", "message": "The video could not be rendered."}
            else:
                error = dict(record["fail"])
        elif status == "cancelled":
            credits = record["cancel_credits"]
        return {
            "status": status,
            "progress": progress,
            "credits": credits,
            "error": error,
            "completed_at": completed_at,
            "expires_at": expires_at,
        }

    def _sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}{expires}".encode(), hashlib.sha256).hexdigest()

    def result_url(self, task_id: str, expires_at: float, origin: str | None = None) -> str:
        expires = int(expires_at)
        sig = self._sign(task_id, expires)
        return f"{origin or self.base_url}/files/{task_id}.mp4?expires={expires}&sig={sig}"

    # --- operations (called by the handler) ---------------------------------------------------------------

    def take_fault(self, op: str) -> dict | None:
        with self._lock:
            queue = self._faults[op]
            if not queue:
                return None
            fault = queue[0]
            fault["remaining"] -= 1
            if fault["remaining"] <= 0:
                queue.popleft()
            return dict(fault["spec"])

    def check_prompt(self, prompt: str) -> None:
        if self._blocked is not None and self._blocked.search(prompt):
            raise ApiError(451, "prompt_blocked", "The prompt was blocked by upstream safety.")

    def submit(self, spec: dict) -> dict:
        self.check_prompt(spec["prompt"])
        task_fault = self.take_fault("task")
        fail = None
        if task_fault is not None:
            fail = {
                "code": "generation_failed",
                "message": str(task_fault.get("message") or "The model failed to generate the video."),
            }
        return self._create_task(spec, fail)

    def lookup(self, task_id: str, protocol: str) -> tuple[dict, dict]:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record["protocol"] != protocol:
                raise ApiError(404, "not_found", f"No task with task_id {task_id!r} exists.")
            return copy.deepcopy(record), self._view(record, self.now())

    def cancel(self, task_id: str, protocol: str) -> dict:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record["protocol"] != protocol:
                raise ApiError(404, "not_found", f"No task with task_id {task_id!r} exists.")
            now = self.now()
            status, fraction = self._status(record, now)
            if status in TERMINAL:
                message = f"The task is already {status} and cannot be cancelled."
                raise ApiError(409, "not_cancellable", message, extra={"status": status})
            if status == "queued":
                credits = 0.0
                progress = 0
            else:
                duration = record["duration_seconds"]
                seconds = min(duration, max(1, math.ceil(fraction * duration)))
                credits = round(seconds * record["rate"] * self.config.bill_factor, 4)
                progress = min(99, int(99 * fraction))
            record["cancelled_at"] = now
            record["cancel_credits"] = credits
            record["cancel_progress"] = progress
            self._save()
        return {"task_id": task_id, "status": "cancelled", "credits": credits}

    def check_signature(self, task_id: str, query: dict) -> Path:
        """The clip path when (expires, sig) are valid and unexpired; ApiError 403/404 otherwise."""
        expired = ApiError(403, "url_expired", "The result URL has expired or its signature is invalid.")
        try:
            expires = int(query.get("expires", [""])[0])
        except ValueError:
            raise expired from None
        sig = query.get("sig", [""])[0]
        if not hmac.compare_digest(sig.encode(), self._sign(task_id, expires).encode()):
            raise expired
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None:
                raise ApiError(404, "not_found", "No such file.")
            view = self._view(record, self.now())
        if view["status"] != "completed":
            raise ApiError(404, "not_found", "No such file.")
        now = self.now()
        if now >= expires or now >= view["expires_at"]:
            raise expired
        path = self._clip_path(task_id)
        if not path.exists():
            raise ApiError(404, "not_found", "No such file.")
        return path

    def handle_control(self, method: str, path: str, body) -> tuple[int, dict]:
        if path == "/_emulator/health" and method == "GET":
            return 200, {"ok": True, "submissions": self.submissions}
        if path == "/_emulator/faults" and method == "GET":
            return 200, {"ok": True, "faults": self.pending_faults()}
        if path == "/_emulator/faults" and method == "POST":
            items = body if isinstance(body, list) else [body]
            for item in items:
                if not isinstance(item, dict) or "op" not in item:
                    raise invalid("op", "each fault must be an object with an op")
                spec = dict(item)
                op = spec.pop("op")
                times = spec.pop("times", 1)
                try:
                    self.add_fault(op, times, **spec)
                except (TypeError, ValueError) as exc:
                    raise invalid("op", str(exc)) from None
            return 200, {"ok": True, "faults": self.pending_faults()}
        if path == "/_emulator/faults" and method == "DELETE":
            self.clear_faults()
            return 200, {"ok": True}
        if path == "/_emulator/expire-results" and method == "POST":
            self.expire_results()
            return 200, {"ok": True}
        match = re.fullmatch(r"/_emulator/tasks/([^/]+)", path)
        if match and method == "GET":
            try:
                return 200, self.task(match.group(1))
            except KeyError:
                raise ApiError(404, "not_found", "No such task.") from None
        known = ("/_emulator/health", "/_emulator/faults", "/_emulator/expire-results")
        if path in known or match:
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}.")
        raise ApiError(404, "not_found", f"No route for {path}.")


# --- HTTP -------------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    emulator: Emulator

    def __init__(self, address: tuple[str, int], handler) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS; it is not needed.
        socketserver.TCPServer.server_bind(self)
        # (host, port) for AF_INET, (host, port, flowinfo, scope_id) for AF_INET6
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


ROUTES: list[tuple[re.Pattern, dict[str, str]]] = [
    (re.compile(r"/v1/videos/generations"), {"POST": "openai_submit"}),
    (re.compile(r"/v1/videos/tasks/(?P<task_id>[^/]+)"), {"GET": "openai_poll"}),
    (re.compile(r"/v1/videos/tasks/(?P<task_id>[^/]+)/cancel"), {"POST": "openai_cancel"}),
    (re.compile(r"/v1/tasks/submit"), {"POST": "tasks_submit"}),
    (re.compile(r"/v1/tasks/query"), {"GET": "tasks_poll"}),
    (re.compile(r"/v1/tasks/cancel"), {"POST": "tasks_cancel"}),
    (re.compile(r"/files/(?P<task_id>[A-Za-z0-9_]+)\.mp4"), {"GET": "file", "HEAD": "file"}),
]


class _Dropped(Exception):
    """Close the connection without answering."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bytespike-emulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections
    server: _Server

    # --- plumbing -----------------------------------------------------------------------------------------

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def setup(self) -> None:
        super().setup()
        with self.emu._lock:
            self.emu._conns.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.emu._lock:
            self.emu._conns.discard(self.connection)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # one line per request is logged by _log instead (never headers, so never the credential)

    def _log(self, status) -> None:
        log.info("%s %s %s", self.command, urlsplit(getattr(self, "path", "") or "").path, status)

    def send_error(self, code, message=None, explain=None) -> None:
        """Malformed requests and unsupported methods get the same JSON error shape as everything else."""
        self.close_connection = True
        err = ApiError(code, None, message if code != 501 else f"{self.command} is not supported.")
        try:
            self._send_json(code, err.body())
        except OSError:
            pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._log(status)

    def _send_json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise ApiError(413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid_request", "The Content-Length header is invalid.") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, raw: bytes, *, allow_list: bool = False):
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "invalid_request", "The request body must be valid JSON.") from None
        if isinstance(body, dict) or (allow_list and isinstance(body, list)):
            return body
        raise ApiError(400, "invalid_request", "The request body must be a JSON object.")

    def _authenticate(self, protocol: str) -> None:
        if protocol == OPENAI:
            header = (self.headers.get("Authorization") or "").strip()
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer":
                credential = ""
            missing = "Send your API key as 'Authorization: Bearer <key>'."
        else:
            credential = self.headers.get("x-api-key") or ""
            missing = "Send your API key in the x-api-key header."
        credential = credential.strip()
        if not credential:
            raise ApiError(401, "unauthorized", f"The API key is missing. {missing}")
        expected = self.emu.config.api_key
        if expected is not None and not hmac.compare_digest(credential.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "The API key is invalid.")

    def _origin(self) -> str:
        host = (self.headers.get("Host") or "").strip()
        return f"http://{host}" if _HOST_HEADER.match(host) else self.emu.base_url

    # --- dispatch -----------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
            parts = urlsplit(self.path)
            path = parts.path
            query = parse_qs(parts.query, keep_blank_values=True)
            if path.startswith("/_emulator/"):
                body = self._json_body(raw, allow_list=True) if raw.strip() else {}
                status, payload = self.emu.handle_control(self.command, path, body)
                self._send_json(status, payload)
                return
            for pattern, methods in ROUTES:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                name = methods.get(self.command)
                if name is None:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"{self.command} is not allowed on {path}.",
                        headers={"Allow": ", ".join(methods)},
                    )
                getattr(self, f"_op_{name}")(raw, query, **match.groupdict())
                return
            raise ApiError(404, "not_found", f"No route for {self.command} {path}.")
        except ApiError as err:
            headers = dict(err.headers)
            if err.status == 405 and "Allow" not in headers:
                headers["Allow"] = "GET, POST"
            self._reply_error(err, headers)
        except _Dropped:
            self.close_connection = True
            self._log("dropped")
        except OSError:
            self.close_connection = True
            self._log("client-gone")
        except Exception:
            log.exception("Emulator error on %s %s", self.command, urlsplit(self.path).path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._reply_error(ApiError(500), {})

    def _reply_error(self, err: ApiError, headers: dict[str, str]) -> None:
        self._send_json(err.status, err.body(), headers)

    def _fault_error(self, fault: dict) -> ApiError:
        status = int(fault["status"])
        headers = {}
        retry_after = fault.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return ApiError(status, fault.get("code"), fault.get("message"), headers=headers)

    # --- protocol operations ------------------------------------------------------------------------------

    def _submit(self, raw: bytes, protocol: str, validate) -> dict:
        self._authenticate(protocol)
        fault = self.emu.take_fault("submit")
        if fault is not None and "status" in fault and fault.get("kind") is None:
            raise self._fault_error(fault)
        spec = validate(self._json_body(raw))
        record = self.emu.submit(spec)
        if fault is not None and fault.get("kind") == "hang":
            time.sleep(float(fault.get("seconds", 30)))
        elif fault is not None and fault.get("kind") == "drop":
            raise _Dropped
        return record

    def _op_openai_submit(self, raw: bytes, query: dict) -> None:
        record = self._submit(raw, OPENAI, validate_sora2)
        self._send_json(
            200,
            {
                "task_id": record["task_id"],
                "status": "queued",
                "model": SORA2,
                "created_at": iso(record["submitted_at"]),
            },
        )

    def _op_tasks_submit(self, raw: bytes, query: dict) -> None:
        record = self._submit(raw, TASKS, validate_pro)
        self._send_json(
            200,
            {
                "task_id": record["task_id"],
                "status": "queued",
                "estimated_credits": record["estimated_credits"],
                "submitted_at": iso(record["submitted_at"]),
            },
        )

    def _poll(self, protocol: str, task_id: str, shape) -> None:
        self._authenticate(protocol)
        fault = self.emu.take_fault("poll")
        if fault is not None:
            kind = fault.get("kind")
            if kind is None:
                raise self._fault_error(fault)
            if kind == "slow":
                time.sleep(float(fault.get("seconds", 30)))
            elif kind == "malformed":
                self._send(200, b'{"status": "runn', "application/json")
                return
        record, view = self.emu.lookup(task_id, protocol)
        payload = shape(record, view)
        if fault is not None and fault.get("kind") == "status":
            payload["status"] = fault.get("value")
        self._send_json(200, payload)

    def _openai_shape(self, record: dict, view: dict) -> dict:
        url = None
        if view["status"] == "completed":
            url = self.emu.result_url(record["task_id"], view["expires_at"], self._origin())
        return {
            "task_id": record["task_id"],
            "status": view["status"],
            "progress": view["progress"],
            "result_url": url,
            "duration_seconds": record["duration_seconds"],
            "size": record["params"]["size"],
            "credits": view["credits"],
            "error": view["error"],
            "created_at": iso(record["submitted_at"]),
            "completed_at": iso(view["completed_at"]),
            "expires_at": iso(view["expires_at"]),
        }

    def _tasks_shape(self, record: dict, view: dict) -> dict:
        result = None
        if view["status"] == "completed":
            result = {
                "video_url": self.emu.result_url(record["task_id"], view["expires_at"], self._origin()),
                "duration_seconds": record["duration_seconds"],
                "resolution": record["params"]["resolution"],
                "aspect_ratio": record["params"]["aspect_ratio"],
                "expires_at": iso(view["expires_at"]),
            }
        return {
            "task_id": record["task_id"],
            "status": view["status"],
            "progress": view["progress"],
            "result": result,
            "credits": view["credits"],
            "submitted_at": iso(record["submitted_at"]),
            "completed_at": iso(view["completed_at"]),
            "error": view["error"],
        }

    def _op_openai_poll(self, raw: bytes, query: dict, task_id: str) -> None:
        self._poll(OPENAI, task_id, self._openai_shape)

    def _op_tasks_poll(self, raw: bytes, query: dict) -> None:
        self._authenticate(TASKS)
        task_id = (query.get("task_id") or [""])[0].strip()
        if not task_id:
            raise invalid("task_id", "task_id is required as a query parameter")
        self._poll(TASKS, task_id, self._tasks_shape)

    def _cancel(self, protocol: str, task_id: str) -> None:
        fault = self.emu.take_fault("cancel")
        if fault is not None and "status" in fault:
            raise self._fault_error(fault)
        self._send_json(200, self.emu.cancel(task_id, protocol))

    def _op_openai_cancel(self, raw: bytes, query: dict, task_id: str) -> None:
        self._authenticate(OPENAI)
        self._cancel(OPENAI, task_id)

    def _op_tasks_cancel(self, raw: bytes, query: dict) -> None:
        self._authenticate(TASKS)
        body = self._json_body(raw) if raw.strip() else {}
        task_id = body.get("task_id") or (query.get("task_id") or [""])[0]
        if not isinstance(task_id, str) or not task_id.strip():
            raise invalid("task_id", "task_id is required")
        self._cancel(TASKS, task_id.strip())

    def _op_file(self, raw: bytes, query: dict, task_id: str) -> None:
        fault = self.emu.take_fault("result")
        kind = fault.get("kind") if fault else None
        if fault is not None and kind is None:
            raise self._fault_error(fault)
        if kind == "wrong_type":
            html = b"<!doctype html><html><head><title>Sign in</title></head><body>Sign in.</body></html>"
            self._send(200, html, "text/html; charset=utf-8")
            return
        if kind == "redirect" and fault is not None:  # a kind comes from a fault
            location = str(fault.get("location") or "/")
            self._send(302, b"", "text/plain", {"Location": location})
            return
        path = self.emu.check_signature(task_id, query)
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "private, max-age=0")
        self.send_header("Accept-Ranges", "none")
        self.end_headers()
        if self.command == "HEAD":
            self._log(200)
            return
        limit = size // 2 if kind == "truncate" else size
        sent = 0
        with path.open("rb") as handle:
            while sent < limit:
                chunk = handle.read(min(FILE_CHUNK, limit - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        if kind == "truncate":
            self.wfile.flush()
            self.close_connection = True
            self._log("200-truncated")
            return
        self._log(200)
