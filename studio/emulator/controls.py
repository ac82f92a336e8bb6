"""The test controls under /_emulator/ (no auth): health, faults, expiring result URLs, a task's record.

- GET /_emulator/health, GET/POST/DELETE /_emulator/faults (POST takes one fault object or a list of them,
  each `{"op": ..., "times": n, ...spec}`), POST /_emulator/expire-results, GET /_emulator/tasks/{id},
  GET /_emulator/polls (when every poll of every task arrived: the cadence as the gateway sees it).
"""

from __future__ import annotations

import re

from .faults import Faults
from .protocol import ApiError, invalid
from .state import TaskStore

_TASK = re.compile(r"/_emulator/tasks/([^/]+)")
_KNOWN = ("/_emulator/health", "/_emulator/polls", "/_emulator/faults", "/_emulator/expire-results")


def handle_control(method: str, path: str, body, store: TaskStore, faults: Faults) -> tuple[int, dict]:
    """(status, JSON payload) of a control request; ApiError for an unknown path or method."""
    if path == "/_emulator/health" and method == "GET":
        return 200, {"ok": True, "submissions": store.submissions}
    if path == "/_emulator/polls" and method == "GET":
        return 200, {"ok": True, "tasks": store.poll_log()}
    if path == "/_emulator/faults" and method == "GET":
        return 200, {"ok": True, "faults": faults.pending()}
    if path == "/_emulator/faults" and method == "POST":
        items = body if isinstance(body, list) else [body]
        for item in items:
            if not isinstance(item, dict) or "op" not in item:
                raise invalid("op", "each fault must be an object with an op")
            spec = dict(item)
            op = spec.pop("op")
            times = spec.pop("times", 1)
            try:
                faults.add(op, times, **spec)
            except (TypeError, ValueError) as exc:
                raise invalid("op", str(exc)) from None
        return 200, {"ok": True, "faults": faults.pending()}
    if path == "/_emulator/faults" and method == "DELETE":
        faults.clear()
        return 200, {"ok": True}
    if path == "/_emulator/expire-results" and method == "POST":
        store.expire_results()
        return 200, {"ok": True}
    match = _TASK.fullmatch(path)
    if match and method == "GET":
        try:
            return 200, store.task(match.group(1))
        except KeyError:
            raise ApiError(404, "not_found", "No such task.") from None
    if path in _KNOWN or match:
        raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}.")
    raise ApiError(404, "not_found", f"No route for {path}.")
