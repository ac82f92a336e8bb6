"""Fault injection: tests queue faults that the next matching requests consume, first in, first out per op.

A fault is `op` plus either `status=<int>` (answer with that error; `retry_after`, `code`, `message` optional)
or `kind=` one of FAULT_KINDS[op], whose behaviour the HTTP handler acts out (hang, drop, slow, malformed,
status, truncate, wrong_type, redirect, and for result files: trickle at `rate` bytes/s, cut the connection
`after` bytes, stall `seconds` after `after` bytes, ignore_range, damaged: 4 KB zeroed mid-file, slow: the
clip's bytes spread over `seconds`). The `task`
op makes the next created task fail when it would finish.
"""

from __future__ import annotations

import threading
from collections import deque

from .protocol import ApiError, is_int

FAULT_OPS = ("submit", "poll", "task", "result", "cancel")
FAULT_KINDS = {
    "submit": ("hang", "drop"),
    "poll": ("slow", "malformed", "status"),
    "task": (),
    "result": (
        "truncate",
        "wrong_type",
        "redirect",
        "trickle",
        "cut",
        "stall",
        "ignore_range",
        "damaged",
        "slow",
    ),
    "cancel": (),
}


class Faults:
    """The queued faults, one FIFO per op; safe to use from every request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque] = {op: deque() for op in FAULT_OPS}

    def add(self, op: str, times: int = 1, **spec) -> None:
        """Queue a fault consumed by the next `times` matching requests (FIFO per op)."""
        if op not in FAULT_OPS:
            raise ValueError(f"unknown fault op {op!r}; expected one of {', '.join(FAULT_OPS)}")
        if not is_int(times) or times < 1:
            raise ValueError("times must be a positive integer")
        kind = spec.get("kind")
        status = spec.get("status")
        if op == "task":
            if spec.get("outcome", "fail") != "fail":
                raise ValueError('the only task outcome is "fail"')
        elif kind is not None:
            if kind not in FAULT_KINDS[op]:
                raise ValueError(f"unknown {op} fault kind {kind!r}")
        elif not is_int(status) or not 100 <= status <= 599:
            raise ValueError(f"a {op} fault needs status=<int> or kind=<one of {FAULT_KINDS[op]}>")
        with self._lock:
            self._queues[op].append({"spec": dict(spec), "remaining": times})

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()

    def pending(self) -> dict[str, int]:
        """How many requests each op's queued faults will still catch (ops with none left out)."""
        with self._lock:
            return {op: sum(f["remaining"] for f in q) for op, q in self._queues.items() if q}

    def take(self, op: str) -> dict | None:
        """The spec of the fault this request of `op` consumes, or None."""
        with self._lock:
            queue = self._queues[op]
            if not queue:
                return None
            fault = queue[0]
            fault["remaining"] -= 1
            if fault["remaining"] <= 0:
                queue.popleft()
            return dict(fault["spec"])

    def task_failure(self) -> dict | None:
        """The error a task created now will fail with, when a `task` fault is queued (consuming it)."""
        fault = self.take("task")
        if fault is None:
            return None
        return {
            "code": "generation_failed",
            "message": str(fault.get("message") or "The model failed to generate the video."),
        }


def fault_error(fault: dict) -> ApiError:
    """The error answer of a `status=` fault (a 429 says `Retry-After: 1` unless the fault says otherwise)."""
    status = int(fault["status"])
    headers = {}
    retry_after = fault.get("retry_after", 1 if status == 429 else None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ApiError(status, fault.get("code"), fault.get("message"), headers=headers)
