"""Logging: a filter that keeps the gateway credential out of every line, the render a line is about, and JSON.

`STUDIO_LOG_FORMAT=json` (studio/settings.py) formats each record as one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replace the API key wherever it appears in a record's message, arguments or traceback (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django.conf import settings

        secret = getattr(settings, "BYTESPIKE_API_KEY", "")
        if not secret:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: let logging report it as it always does
            return True
        if secret in message:
            record.msg = message.replace(secret, REDACTED)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and secret in record.exc_text:
            record.exc_text = record.exc_text.replace(secret, REDACTED)
        if record.stack_info and secret in record.stack_info:
            record.stack_info = record.stack_info.replace(secret, REDACTED)
        return True


# --- which render a line is about, and one JSON object per line ------------------------------------------------

UUID_TEXT = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
# render id -> (gateway task id, when it was read): the most recent few thousand, each read again after a minute
# (an operator may attach a render to another task, or send it again).
_task_ids: OrderedDict[str, tuple[str, float]] = OrderedDict()
_TASK_IDS_KEPT = 4096
_TASK_ID_FRESH_SECONDS = 60.0
_looking_up = threading.local()


def _render_id_in(args) -> str:
    """The first argument that is a render id (a UUID, or its text), as text; "" if there is none."""
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else ()
    for value in values:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str) and UUID_TEXT.match(value):
            return str(uuid.UUID(value))
        if getattr(value, "_meta", None) is not None and getattr(value._meta, "model_name", "") == "render":
            return str(value.pk)
    return ""


def _lookup(render_id: str) -> tuple[bool, str] | None:
    """(is it a render, its gateway task id), read by primary key; None when it cannot be asked here.

    A task id, once a render has one, is remembered for a minute. Never on a thread with no connection open (a
    pool thread doing HTTP only), never in a transaction that already failed, never recursively (the query could
    log): a log line must never open connections or break the step that writes it.
    """
    known = _task_ids.get(render_id)
    if known is not None and time.monotonic() - known[1] < _TASK_ID_FRESH_SECONDS:
        return True, known[0]
    if getattr(_looking_up, "active", False):
        return None
    _looking_up.active = True
    try:
        from django.apps import apps
        from django.db import connection

        if connection.connection is None or (connection.in_atomic_block and connection.needs_rollback):
            return None
        rows = apps.get_model("studio", "Render").objects.filter(pk=render_id)
        found = list(rows.values_list("gateway_task_id", flat=True)[:1])
    except Exception:  # an async context, a database that is down: the line goes without
        return None
    finally:
        _looking_up.active = False
    if found and found[0]:
        _task_ids[render_id] = (found[0], time.monotonic())
        _task_ids.move_to_end(render_id)
        while len(_task_ids) > _TASK_IDS_KEPT:
            _task_ids.popitem(last=False)
    return bool(found), found[0] if found else ""


class RenderFields(logging.Filter):
    """Give every record `render_id` and `task_id` ("" when the line is about no render, or has no task yet).

    From `extra={"render_id": ..., "task_id": ...}` when the call passes them; else the first argument that is a
    render id (every lifecycle line names its render that way: "Render %s ..."), checked to be a render and its
    gateway task id read once from the database and remembered. Where the database cannot be asked, the id is
    kept as it was written. No lifecycle code needs to change to be followed in the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        render_id = str(getattr(record, "render_id", "") or "")
        task_id = str(getattr(record, "task_id", "") or "")
        if not render_id:
            render_id = _render_id_in(record.args)
            found = _lookup(render_id) if render_id else None
            if found is not None:
                is_render, task_id = found
                render_id = render_id if is_render else ""  # a UUID that is no render's (a gateway task id)
        elif not task_id:
            found = _lookup(render_id)
            task_id = found[1] if found else ""
        record.render_id, record.task_id = render_id, task_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process, render_id/task_id, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in ("render_id", "task_id"):
            value = getattr(record, name, "")
            if value:
                entry[name] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)
