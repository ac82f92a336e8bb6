"""The emulator's tasks: configuration, the task store with its clock, timings, billing, cancel, signed result
URLs and persistence (tasks.json, and tasks.journal between its rewrites), and the renders that make each task's clip.

A task's status is derived from the clock (queued for Q seconds, then running for R seconds, both divided by
`speed`) and from whether its clip file is ready; the clip is rendered by ffmpeg (video.py) in a small thread
pool from the moment the task is created. Nothing here reads a request or writes an answer; a refusal is
raised as protocol.ApiError for the handler to send.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import video
from .protocol import OPENAI, SORA2, TERMINAL, ApiError

log = logging.getLogger("studio.emulator")

MAX_RENDERS = 2
JOURNAL_MIN_LINES = 1000  # tasks.journal is folded into tasks.json past max(this, the number of tasks) lines


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


def _jitter(task_id: str, salt: str) -> float:
    """A deterministic factor in [0.85, 1.15] from the task id."""
    digest = hashlib.sha256(f"{salt}:{task_id}".encode()).digest()
    return 0.85 + 0.30 * (int.from_bytes(digest[:4], "big") / 0xFFFFFFFF)


def _timings(task_id: str, spec: dict, speed: float) -> tuple[float, float]:
    """(seconds queued, seconds running) of a new task: per model and clip length, jittered per task."""
    duration = spec["duration"]
    if spec["model"] == SORA2:
        queue_s, run_s = 2.0, 6.0 + 0.5 * duration
    else:
        queue_s = 3.0
        run_s = 8.0 + 0.6 * duration * (1.5 if spec["params"]["resolution"] == "1080p" else 1.0)
    return queue_s * _jitter(task_id, "queue") / speed, run_s * _jitter(task_id, "run") / speed


def _blocked_pattern(words: tuple[str, ...]) -> re.Pattern | None:
    """One case-insensitive pattern matching any of the words standing alone, or None for no words."""
    words = tuple(w.strip() for w in words if w and w.strip())
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


class TaskStore:
    """Every task the emulator was given, kept in `data_dir/tasks.json` (and `tasks.journal`); safe to use from
    every thread."""

    def __init__(self, config: EmulatorConfig, data_dir: Path) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._tasks: dict[str, dict] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = False
        # A monotonic wall clock: immune to clock steps while the process runs.
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self.data_dir = data_dir
        self.clips_dir = data_dir / "clips"
        self.inputs_dir = data_dir / "inputs"
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        self._state_path = data_dir / "tasks.json"
        self._journal_path = data_dir / "tasks.journal"
        self._blocked = _blocked_pattern(config.blocked_words)
        self._secret = secrets.token_bytes(32)
        self._submissions = 0
        self._polls: dict[str, list[float]] = {}  # task id -> the wall time of every poll, in order
        # Saving: each change appends its task's record to tasks.journal (one line, written after the lock is
        # released, so polls never wait for the disk), and tasks.json, the whole state, is rewritten only when
        # the journal has grown past the number of tasks, and on stop: a change costs the same with 10 or 10,000
        # tasks (rewriting every task on every change made a batch of 3,000 quadratic).
        self._save_lock = threading.Lock()  # orders the writes: lines reach the journal in the order made
        self._pending: list[str] = []  # journal lines not written yet
        self._journal_lines = 0
        self._compact_due = True  # the state just loaded is written whole, and the journal emptied
        self._load()
        self._write_saved()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0)

    # --- reading ------------------------------------------------------------------------------------------

    @property
    def submissions(self) -> int:
        with self._lock:
            return self._submissions

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

    def record_poll(self, task_id: str) -> None:
        """Remember when a poll of `task_id` arrived: what the gateway sees of the studio's cadence."""
        now = self.now()
        with self._lock:
            self._polls.setdefault(task_id, []).append(now)

    def poll_log(self) -> dict:
        """{task id: {"submitted_at": t, "polls": [t, ...]}} for every task polled so far (unix seconds)."""
        with self._lock:
            return {
                task_id: {
                    "submitted_at": self._tasks[task_id]["submitted_at"] if task_id in self._tasks else None,
                    "polls": list(times),
                }
                for task_id, times in self._polls.items()
            }

    def lookup(self, task_id: str, protocol: str) -> tuple[dict, dict]:
        """(a copy of the record, its derived view) of a task made through `protocol`; else ApiError 404."""
        with self._lock:
            record = self._record(task_id, protocol)
            # Records hold plain values and flat dicts (params, fail): a copy one level deep is a full copy, and
            # a deepcopy on every poll cost more than the rest of the answer.
            snapshot = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in record.items()}
            return snapshot, self._view(record, self.now())

    def _record(self, task_id: str, protocol: str) -> dict:
        """The live record (callers hold the lock); a task of the other protocol is as unknown as no task."""
        record = self._tasks.get(task_id)
        if record is None or record["protocol"] != protocol:
            raise ApiError(404, "not_found", f"No task with task_id {task_id!r} exists.")
        return record

    # --- persistence --------------------------------------------------------------------------------------

    def _load(self) -> None:
        """tasks.json, then the journal's lines over it (a torn last line, from a crash mid-write, is dropped)."""
        if self._state_path.exists():
            try:
                state = json.loads(self._state_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"cannot read emulator state {self._state_path}: {exc}") from exc
            self._secret = bytes.fromhex(state.get("secret") or self._secret.hex())
            self._tasks = dict(state.get("tasks") or {})
            self._submissions = int(state.get("submissions", len(self._tasks)))
        if self._journal_path.exists():
            for line in self._journal_path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    record = entry["task"]
                    self._tasks[record["task_id"]] = record
                except (ValueError, KeyError, TypeError):
                    log.warning("Dropped a torn line of %s", self._journal_path.name)
                    break
                self._submissions = max(self._submissions, int(entry.get("submissions", 0)))

    def _save(self, task_id: str | None = None) -> None:
        """Note a change to one task (None: to many; the whole state is written). Callers hold the lock, and
        call `_write_saved()` once it is released."""
        if task_id is None:
            self._compact_due = True
            return
        entry = {"task": self._tasks[task_id], "submissions": self._submissions}
        self._pending.append(json.dumps(entry, separators=(",", ":")))

    def _write_saved(self) -> None:
        """Append the changes noted so far to the journal; rewrite tasks.json (and empty the journal) when due.

        The journal's lines are written before the snapshot that holds them, and the journal is emptied after it:
        a crash in between leaves lines whose last state for each task is the snapshot's, so nothing goes back."""
        with self._save_lock:
            with self._lock:
                lines, self._pending = self._pending, []
                compact = self._compact_due or self._journal_lines + len(lines) > max(
                    JOURNAL_MIN_LINES, len(self._tasks)
                )
                state = self._snapshot() if compact else None
                self._compact_due = False
            try:
                if lines:
                    with self._journal_path.open("a", encoding="utf-8") as journal:
                        journal.write("\n".join(lines) + "\n")
                    self._journal_lines += len(lines)
                if state is not None:
                    self._write_state(state)
                    self._journal_path.write_text("", encoding="utf-8")
                    self._journal_lines = 0
            except OSError as exc:  # e.g. the temp data dir was removed by stop() under a hung request
                log.warning("Could not save emulator state: %s", exc)
                # A line may be torn, and the lines taken are gone from `_pending`: the next write is the whole
                # state (tasks.json from memory, the journal emptied), never more lines after a torn one.
                with self._lock:
                    self._compact_due = True

    def _snapshot(self) -> dict:
        return {
            "version": 1,
            "secret": self._secret.hex(),
            "submissions": self._submissions,
            "tasks": {task_id: dict(record) for task_id, record in self._tasks.items()},
        }

    def close(self) -> None:
        """Write the whole state to tasks.json and empty the journal (on stop: readers find it all there)."""
        with self._lock:
            self._compact_due = True
        self._write_saved()

    def _write_state(self, state: dict) -> None:
        tmp = self._state_path.with_name(f".tasks.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self._state_path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    # --- creating tasks -----------------------------------------------------------------------------------

    def check_prompt(self, prompt: str) -> None:
        """ApiError 451 when the prompt holds a blocked word."""
        if self._blocked is not None and self._blocked.search(prompt):
            raise ApiError(451, "prompt_blocked", "The prompt was blocked by upstream safety.")

    def create_task(self, spec: dict, fail: dict | None) -> dict:
        """Create, persist and start rendering a task (the caller has validated `spec` and its prompt);
        `fail` is the error it ends with instead of completing, if any."""
        prefix = "vid_" if spec["protocol"] == OPENAI else "task_"
        task_id = prefix + secrets.token_hex(12)
        queue_s, run_s = _timings(task_id, spec, self.config.speed)
        duration = spec["duration"]
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
            self._save(task_id)
            if self._executor is not None and not self._stopped:
                self._executor.submit(self._render, task_id)
        self._write_saved()
        return record

    # --- rendering ----------------------------------------------------------------------------------------

    def _clip_path(self, task_id: str) -> Path:
        return self.clips_dir / f"{task_id}.mp4"

    def start_renders(self) -> None:
        """Start the render pool (once) and resume the renders of tasks loaded from disk."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=MAX_RENDERS, thread_name_prefix="emulator-render")
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
                self._executor.submit(self._render, task_id)
            self._save()
        self._write_saved()

    def stop_renders(self) -> None:
        """Start no further render; `join_renders()` then waits for the one in progress."""
        with self._lock:
            self._stopped = True

    def join_renders(self) -> None:
        """Drop the renders still waiting and wait for those in progress."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

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
            self._save(task_id)
        self._write_saved()

    # --- status and billing -------------------------------------------------------------------------------

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

    def cancel(self, task_id: str, protocol: str) -> dict:
        """Cancel a queued (free) or running task (billed per second rendered, rounded up); 409 if ended."""
        with self._lock:
            record = self._record(task_id, protocol)
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
            self._save(task_id)
        self._write_saved()
        return {"task_id": task_id, "status": "cancelled", "credits": credits}

    # --- signed result URLs -------------------------------------------------------------------------------

    def _sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}{expires}".encode(), hashlib.sha256).hexdigest()

    def result_url(self, task_id: str, expires_at: float, origin: str) -> str:
        """The pre-signed URL of a completed task's clip, valid until `expires_at`."""
        expires = int(expires_at)
        sig = self._sign(task_id, expires)
        return f"{origin}/files/{task_id}.mp4?expires={expires}&sig={sig}"

    def expire_results(self) -> None:
        """Expire the result URL of every task that exists now (403 from now on, even for URLs issued when
        such a task completes later); tasks submitted afterwards get normal URLs."""
        with self._lock:
            now = self.now()
            for record in self._tasks.values():
                if record.get("expired_at") is None:
                    record["expired_at"] = now - 1
            self._save()
        self._write_saved()

    def signed_clip(self, task_id: str, expires: str, sig: str) -> Path:
        """The clip path when (expires, sig) are valid and unexpired; ApiError 403/404 otherwise."""
        expired = ApiError(403, "url_expired", "The result URL has expired or its signature is invalid.")
        try:
            expires_at = int(expires)
        except ValueError:
            raise expired from None
        if not hmac.compare_digest(sig.encode(), self._sign(task_id, expires_at).encode()):
            raise expired
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None:
                raise ApiError(404, "not_found", "No such file.")
            view = self._view(record, self.now())
        if view["status"] != "completed":
            raise ApiError(404, "not_found", "No such file.")
        now = self.now()
        if now >= expires_at or now >= view["expires_at"]:
            raise expired
        path = self._clip_path(task_id)
        if not path.exists():
            raise ApiError(404, "not_found", "No such file.")
        return path
