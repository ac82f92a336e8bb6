"""`manage.py render` and `manage.py renders`: the same validation as the form, and plain data out."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from PIL import Image

from studio.models import Render, State
from tests.fixtures import make_render

PROMPT = "A red apple rolls slowly across a wooden table"


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def printed_ids(output: str) -> list[uuid.UUID]:
    return [uuid.UUID(line) for line in output.split() if len(line) == 36 and line.count("-") == 4]


def png(path: Path) -> Path:
    Image.effect_noise((32, 24), 40).convert("RGB").save(path, "PNG")
    return path


def jsonl(path: Path, *lines) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


# --- render -----------------------------------------------------------------------------------------------


def test_render_prints_the_id_of_a_pending_render(owner):
    output = run("render", "--user", "olivia", PROMPT)
    [render_id] = printed_ids(output)
    assert output.strip() == str(render_id)
    render = Render.objects.get(pk=render_id)
    assert (render.user, render.state, render.model, render.prompt) == (owner, State.PENDING, "sora2", PROMPT)
    assert render.params == {"duration_seconds": 5, "size": "1280x720"}
    assert render.estimated_cost == Decimal("0.5")


def test_render_with_pro_options(owner):
    output = run(
        "render",
        *("--user", "olivia", "--model", "sora-2-pro", "--duration", "8", "--resolution", "720p"),
        *("--aspect", "9:16", "--seed", "7", "--style", "anime"),
        PROMPT,
    )
    render = Render.objects.get(pk=printed_ids(output)[0])
    assert render.model == "sora-2-pro"
    assert render.params == {
        "duration_seconds": 8,
        "resolution": "720p",
        "aspect_ratio": "9:16",
        "seed": 7,
        "style_preset": "anime",
    }
    assert render.estimated_cost == Decimal("1.1100")  # 8 s x $0.13875


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--duration", "7"], "duration_seconds"),
        (["--size", "1080x1920"], "size"),
        (["--model", "sora-2-pro", "--duration", "21"], "duration_seconds"),
        (["--model", "sora-2-pro", "--resolution", "4k"], "resolution"),
        (["--model", "sora-2-pro", "--aspect", "4:3"], "aspect_ratio"),
        (["--model", "sora-2-pro", "--seed", "-1"], "seed"),
        (["--model", "sora-2-pro", "--style", "vaporwave"], "style_preset"),
    ],
)
def test_render_validates_like_the_form_and_names_the_field(owner, args, field):
    with pytest.raises(CommandError, match=rf"^arguments: {field}: "):
        run("render", "--user", "olivia", *args, PROMPT)
    assert Render.objects.count() == 0


@pytest.mark.parametrize("prompt", ["   ", "red \x1b[31m apple", "a" * 4001])
def test_render_rejects_the_prompts_the_form_rejects(owner, prompt):
    with pytest.raises(CommandError, match="prompt: "):
        run("render", "--user", "olivia", prompt)


def test_render_with_an_init_image(owner, tmp_path):
    output = run("render", "--user", "olivia", "--image", str(png(tmp_path / "start frame.png")), PROMPT)
    render = Render.objects.get(pk=printed_ids(output)[0])
    assert render.init_image.name == f"renders/{render.pk}/init.png"
    assert render.init_image.size > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "init_image: Init images must be PNG, JPEG or WebP"),
        (None, "cannot read the image"),
    ],
)
def test_render_rejects_a_bad_init_image(owner, tmp_path, content, message):
    path = tmp_path / "frame.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        run("render", "--user", "olivia", "--image", str(path), PROMPT)
    assert Render.objects.count() == 0


def test_render_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("render", "--user", "nobody", PROMPT)


def test_render_needs_a_prompt_or_a_file(owner, tmp_path):
    with pytest.raises(CommandError, match="Give a prompt"):
        run("render", "--user", "olivia")
    with pytest.raises(CommandError, match="not both"):
        run("render", "--user", "olivia", "--from", str(jsonl(tmp_path / "a.jsonl", {"prompt": "x"})), PROMPT)


# --- render --from FILE.jsonl -----------------------------------------------------------------------------


def test_render_from_jsonl_creates_one_render_per_line(owner, tmp_path):
    image = png(tmp_path / "frame.png")
    path = jsonl(
        tmp_path / "batch.jsonl",
        {"prompt": "first", "duration": 10},
        "",
        {"prompt": "second", "model": "sora-2-pro", "duration": 4, "aspect": "1:1", "seed": 3},
        {"prompt": "third", "image": str(image)},
    )
    ids = printed_ids(run("render", "--user", "olivia", "--from", str(path)))
    renders = [Render.objects.get(pk=i) for i in ids]
    assert [r.prompt for r in renders] == ["first", "second", "third"]
    assert renders[0].params == {"duration_seconds": 10, "size": "1280x720"}
    assert renders[1].params == {
        "duration_seconds": 4,
        "resolution": "1080p",
        "aspect_ratio": "1:1",
        "seed": 3,
    }
    assert renders[2].init_image.name == f"renders/{renders[2].pk}/init.png"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "x", "duration": 7}, "duration_seconds: Sora 2 (draft) renders 5, 10 or 15 seconds."),
        ({"prompt": ""}, "prompt: "),
        ({"prompt": "x", "colour": "red"}, "unknown keys colour"),
        ('{"prompt": "x",', "not JSON"),
        ('["x"]', "each line must be a JSON object"),
        ({"prompt": ["x", "y"]}, "prompt must be a string or a whole number"),
        ({"prompt": "x", "seed": True, "model": "sora-2-pro"}, "seed must be a string or a whole number"),
        ({"prompt": "x", "image": 5}, "image must be a string"),
        ({"prompt": "x", "image": "/nonexistent/frame.png"}, "cannot read the image"),
    ],
)
def test_a_bad_line_rejects_the_whole_file_naming_file_and_line(owner, tmp_path, bad, message):
    path = jsonl(tmp_path / "batch.jsonl", {"prompt": "fine"}, bad, {"prompt": "also fine"})
    with pytest.raises(CommandError) as raised:
        run("render", "--user", "olivia", "--from", str(path))
    assert str(raised.value).startswith(f"{path}:2: ")
    assert message in str(raised.value)
    assert Render.objects.count() == 0


def test_a_missing_jsonl_file_is_a_command_error(owner, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run("render", "--user", "olivia", "--from", str(tmp_path / "missing.jsonl"))


# --- render --wait ----------------------------------------------------------------------------------------


@pytest.fixture
def worker(queue):
    """A worker thread draining the queue (submit, poller, download) while the command waits."""
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                queue.run()
                time.sleep(0.02)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)


def test_render_wait_prints_the_finished_render_as_json(gateway, owner, worker):
    output = run("render", "--user", "olivia", "--wait", "--timeout", "20", PROMPT)
    printed = json.loads(output)  # exactly one JSON document: `| jq` works
    assert printed["id"] == str(Render.objects.get().pk)
    assert printed["state"] == "completed", printed["error"]
    assert Path(printed["video"]).is_file()
    assert printed["gateway_task_id"]
    assert Decimal(printed["billed_cost"]) == Decimal("0.5")


def test_render_wait_gives_up_after_its_timeout(owner):
    with pytest.raises(CommandError, match=r"is still pending after 0 s \(is the worker running\?\)"):
        run("render", "--user", "olivia", "--wait", "--timeout", "0.2", PROMPT)


# --- renders ----------------------------------------------------------------------------------------------


def test_renders_json_lists_every_render_with_its_facts(owner, outsider, settings):
    done = make_render(
        owner,
        State.COMPLETED,
        gateway_task_id="task_1",
        billed_cost=Decimal("0.5"),
        video="renders/x/clip.mp4",
        result_url="http://127.0.0.1/files/task_1.mp4?sig=secret",
    )
    failed = make_render(outsider, State.FAILED, error="The gateway could not render this prompt.")
    rows = json.loads(run("renders", "--json"))
    assert [row["id"] for row in rows] == [str(failed.pk), str(done.pk)]
    keys = {"id", "state", "model", "gateway_task_id", "error", "estimated_cost", "billed_cost", "video"}
    assert all(keys <= set(row) for row in rows)
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(done.pk)]["video"] == str(Path(settings.MEDIA_ROOT) / "renders/x/clip.mp4")
    assert Path(by_id[str(done.pk)]["video"]).is_absolute()
    assert by_id[str(done.pk)]["billed_cost"] == "0.5000"
    assert by_id[str(done.pk)]["gateway_task_id"] == "task_1"
    assert by_id[str(failed.pk)]["video"] is None
    assert by_id[str(failed.pk)]["error"] == "The gateway could not render this prompt."
    assert by_id[str(failed.pk)]["billed_cost"] is None
    assert "sig=secret" not in json.dumps(rows)  # never the pre-signed URL


def test_renders_user_filters(owner, outsider):
    mine = make_render(owner, State.PENDING)
    make_render(outsider, State.PENDING)
    assert [row["id"] for row in json.loads(run("renders", "--user", "olivia", "--json"))] == [str(mine.pk)]


def test_renders_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("renders", "--user", "nobody")


def test_renders_table_is_one_line_per_render(owner):
    make_render(owner, State.PENDING, prompt="first line\nsecond line")
    make_render(owner, State.COMPLETED, billed_cost=Decimal("0.25"))
    lines = run("renders").splitlines()
    assert len(lines) == 2
    assert "first line second line" in lines[1]
    assert "$0.2500" in lines[0]
