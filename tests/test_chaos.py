"""`make chaos`: the emulator's slow result, what a run counts, and one tiny run of the command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from studio.chaos import MUST_BE_ZERO, ChildRun, Planned
from studio.models import LedgerEntry, LedgerKind, Render, State
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_a_slow_result_still_delivers_the_whole_clip(gateway):
    """The chaos command slows downloads down so that a kill can land in one: the bytes must all arrive."""
    key = {"x-api-key": "chaos-test"}
    with httpx.Client(base_url=gateway.base_url, timeout=10) as http:
        body = {"model": "sora-2-pro", "prompt": "A slow clip", "duration_seconds": 1, "resolution": "720p"}
        task_id = http.post("/v1/tasks/submit", json=body, headers=key).json()["task_id"]

        def completed():
            """the task completed at the gateway"""
            status = http.get("/v1/tasks/query", params={"task_id": task_id}, headers=key).json()
            return status if status["status"] == "completed" else None

        url = wait_for(completed, timeout=30)["result"]["video_url"]
        gateway.add_fault("result", kind="slow", seconds=0.2)
        response = http.get(url)

    assert response.status_code == 200
    assert response.content == (gateway.clips_dir / f"{task_id}.mp4").read_bytes()
    assert gateway.pending_faults() == {}


def _render(owner, marker: str, state: str, **fields) -> Render:
    return Render.objects.create(
        user=owner,
        model="sora2",
        prompt=f"{marker}: a paper boat",
        params={"duration_seconds": 5, "size": "1280x720"},
        seconds=5,
        state=state,
        estimated_cost=Decimal("0.5"),
        rate_per_second=Decimal("0.1"),
        **fields,
    )


def test_a_run_counts_what_was_lost_or_done_twice(transactional_db, owner, settings, tmp_path):
    """From the emulator's tasks.json and the database: each kind of damage is counted, once."""
    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    run = ChildRun({"seed": 7, "renders": 5}, tmp_path)
    twice = _render(owner, "m-twice", State.COMPLETED, video="renders/a/clip.mp4", video_bytes=1)
    unknown_sent = _render(owner, "m-sent", State.SUBMIT_UNKNOWN)
    unknown_not_sent = _render(owner, "m-not-sent", State.SUBMIT_UNKNOWN)
    stuck = _render(owner, "m-stuck", State.RUNNING)
    failed = _render(owner, "m-failed", State.FAILED)  # ended, and its hold never released
    run.plan = [
        Planned(render.prompt.split(":")[0], {}, render_id=render.pk)
        for render in (twice, unknown_sent, unknown_not_sent, stuck, failed)
    ]
    LedgerEntry.objects.create(render=twice, kind=LedgerKind.SETTLE, amount=1, user=owner, model="sora2")
    tasks = {
        f"t{n}": {"prompt": f"{marker}: a paper boat"}
        for n, marker in enumerate(["m-twice", "m-twice", "m-twice", "m-sent", "m-stuck"])
    }
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    (media / "renders" / "b").mkdir(parents=True)
    (media / "renders" / "b" / ".download-x.part").write_bytes(b"half")
    (media / "renders" / "b" / ".poster-y.jpg").write_bytes(b"")

    result = run.check(tmp_path / "tasks.json")

    assert result["double_submissions"] == 2
    assert result["submit_unknown"] == 2
    assert result["submit_unknown_reached"] == 1
    assert result["unfinished"] == 1
    assert result["unplayable"] == 1  # completed, but its clip is not on disk
    assert result["unsettled"] == 1
    assert result["leftover_temp_files"] == 2
    assert result["double_settlements"] == 0  # the ledger's constraints allow no second outcome


@pytest.mark.cluster
def test_one_tiny_chaos_run_reports_its_figures(tmp_path):
    """`python -m studio.chaos` on SQLite: one run, one kill, its figures as a line and as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "STUDIO_DATA_DIR")}
    options = "--backends sqlite --runs 1 --kills 1 --renders 2 --seed 5 --signals SIGTERM --jobs 1"
    command = [sys.executable, "-m", "studio.chaos", *options.split(), "--dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    total = figures["total"]
    assert (total["runs"], total["kills"], total["renders"], total["errors"]) == (1, 1, 2, 0), done.stdout
    assert figures["seed"] == 5
    assert any(line.startswith("sqlite: 1 runs, 1 kills") for line in lines), done.stdout
    # A graceful stop loses nothing and sends nothing twice; the exit status says whether every count held.
    assert total["double_submissions"] == total["double_settlements"] == total["unfinished"] == 0
    assert done.returncode == (1 if any(total[name] for name in MUST_BE_ZERO) else 0), done.stdout
