"""`STUDIO_LOG_FORMAT=json`: one JSON object per line, the render's id and gateway task id on each line about it,
and never the API key (issue 11)."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from studio.logging import JsonFormatter, RenderFields
from studio.models import State
from tests.fixtures import make_render, submit_render

SENTINEL = "sk-SENTINEL-json-0987654321"
FORM = {"model": "sora2", "prompt": "A red apple rolls", "duration_seconds": "5", "size": "1280x720"}


@pytest.fixture
def json_log(settings):
    """The console handler of settings.LOGGING with STUDIO_LOG_FORMAT=json, writing to a buffer, on the root."""
    config = settings.LOGGING["handlers"]["console"]
    assert "redact" in config["filters"]  # plain or JSON, the key is always redacted
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RenderFields())
    from studio.logging import RedactSecrets

    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line is one JSON object


def test_the_settings_pick_the_json_formatter(monkeypatch, tmp_path):
    from tests.test_settings import load_settings

    settings = load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k", "STUDIO_LOG_FORMAT": "json"})
    assert settings["LOGGING"]["handlers"]["console"]["formatter"] == "json"
    assert settings["LOGGING"]["formatters"]["json"]["()"] == "studio.logging.JsonFormatter"
    assert settings["LOGGING"]["handlers"]["console"]["filters"] == ["render", "redact"]


def test_a_render_with_a_key_configured_is_followed_by_id_and_task_id_and_the_key_never_shows(
    settings, gateway, queue, owner, json_log
):
    settings.BYTESPIKE_API_KEY = settings.GATEWAY_API_KEY = SENTINEL
    settings.USING_EMULATOR = False
    render = submit_render(owner, FORM)
    queue.run()
    render.refresh_from_db()
    assert render.state == State.COMPLETED, render.error
    logging.getLogger("studio.test").warning("The gateway said %s to render %s", SENTINEL, render.pk)

    records = lines(json_log)
    about = [r for r in records if r.get("render_id") == str(render.pk)]
    messages = [r["message"].replace(f"Render {render.pk}", "R") for r in about]
    for step in ("R is now queued", "R submitted as gateway task", "R is now completed", "R settle"):
        assert any(m.startswith(step) for m in messages), (step, messages)
    # Once the gateway has the task, every line about the render names it too.
    after = about[next(i for i, m in enumerate(messages) if m.startswith("R submitted")) :]
    assert all(r.get("task_id") == render.gateway_task_id for r in after), after
    assert {"time", "level", "logger", "message", "process"} <= about[0].keys()
    assert SENTINEL not in json_log.getvalue()
    assert "[redacted]" in json_log.getvalue()


@pytest.mark.django_db
def test_extra_fields_win_and_a_uuid_that_is_no_render_is_not_called_one(owner, json_log):
    render = make_render(owner, State.RUNNING, gateway_task_id="task-from-extra")
    log = logging.getLogger("studio.test")
    log.info("explicit", extra={"render_id": "r-1", "task_id": "t-1"})
    log.info("Gateway task %s reported an odd status", uuid.uuid4())
    log.info("Render %s moved on", render.pk)
    log.info("Nothing about a render")
    explicit, stranger, known, plain = lines(json_log)
    assert (explicit["render_id"], explicit["task_id"]) == ("r-1", "t-1")
    assert "render_id" not in stranger
    assert (known["render_id"], known["task_id"]) == (str(render.pk), "task-from-extra")
    assert "render_id" not in plain and "task_id" not in plain


def test_a_traceback_stays_inside_its_one_line(json_log):
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("studio.test").exception("It failed")
    (record,) = lines(json_log)
    assert record["level"] == "ERROR"
    assert "ValueError: boom" in record["exception"]
