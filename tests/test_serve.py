"""`make serve`: gunicorn workers, whitenoise's hashed and compressed static files, the cluster and the emulator,
started for real on a free port with DEBUG off; and every stack refuses a port in use before starting anything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.test_devstack import answers, free_port, group_alive

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent
HASHED_CSS = re.compile(r"/static/studio/studio\.[0-9a-f]{12}\.css")


def stack_env(data_dir: Path, emulator_port: int) -> dict[str, str]:
    """A production-like environment in its own data dir: SQLite there, DEBUG off, no key (so the emulator)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "BYTESPIKE_API_KEY", "BYTESPIKE_BASE_URL", "DEBUG", "SECRET_KEY"}
        and not k.startswith("STUDIO_")
        and k != "PROMETHEUS_MULTIPROC_DIR"  # the stack counts in its own data dir, not in this test run's
    }
    env.update(
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_EMULATOR_PORT=str(emulator_port),
        STUDIO_Q_NAME=f"serve-test-{os.getpid()}",
        STUDIO_POLL_SCALE="0.1",
        STUDIO_Q_WORKERS="2",
        DEBUG="0",
    )
    return env


def manage(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_make_serve_runs_gunicorn_workers_whitenoise_the_cluster_and_the_emulator(tmp_path):
    web, emulator = free_port(), free_port()
    env = stack_env(tmp_path, emulator)
    for step in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"], ["ensure_demo"]):
        done = manage(*step, env=env)
        assert done.returncode == 0, done.stderr
    base = f"http://127.0.0.1:{web}"
    stack = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--addr",
            f"127.0.0.1:{web}",
            "--workers",
            "2",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env={**env, "STUDIO_LOG_FORMAT": "json"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "stack.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        wait_for(lambda: answers(f"{base}/healthz"), timeout=60)
        wait_for(lambda: answers(f"http://127.0.0.1:{emulator}/_emulator/health"), timeout=30)
        group = subprocess.run(
            ["pgrep", "-g", str(stack.pid), "-af", "."], capture_output=True, text=True
        ).stdout
        assert len(re.findall(r"gunicorn studio\.wsgi", group)) == 3, group  # the master and two workers
        assert "manage.py qcluster" in group, group

        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "poller": "ok"}}
        page = httpx.get(f"{base}/login/", timeout=10)
        assert page.status_code == 200 and page.headers["server"] == "gunicorn"
        assert "Debug toolbar" not in page.text and "DEBUG" not in page.text

        stylesheet = HASHED_CSS.search(page.text)
        assert stylesheet, "the page links the hashed name of the stylesheet"
        compressed = httpx.get(base + stylesheet.group(), headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert compressed.status_code == 200
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.headers["cache-control"] == "max-age=315360000, public, immutable"
        assert "Accept-Encoding" in compressed.headers["vary"]
        identity = httpx.get(base + stylesheet.group(), headers={"Accept-Encoding": "identity"}, timeout=10)
        assert "content-encoding" not in identity.headers
        assert compressed.content == identity.content  # httpx decoded the gzip: the same file
        assert int(compressed.headers["content-length"]) < int(identity.headers["content-length"])

        # A render through the real stack: the cluster counts, a gunicorn worker answers /metrics with it.
        before = scrape(f"{base}/metrics")
        rendered = manage(
            "render", "--user", "demo", "--wait", "--timeout", "120", "A paper boat", env=env, timeout=180
        )
        assert rendered.returncode == 0, rendered.stderr
        assert json.loads(rendered.stdout[rendered.stdout.index("{") :])["state"] == "completed"
        after = scrape(f"{base}/metrics")
        assert after[("studio_polls_total", ())] > before.get(("studio_polls_total", ()), 0)
        done = ("studio_downloads_total", (("outcome", "completed"),))
        assert after[done] == before.get(done, 0) + 1
        assert after[("studio_renders", (("state", "completed"),))] == 1

        stack.send_signal(signal.SIGINT)  # Ctrl-C
        assert stack.wait(timeout=60) == 0
        wait_for(lambda: not group_alive(stack.pid), timeout=30)
        assert not answers(f"{base}/healthz")
    finally:
        if group_alive(stack.pid):
            os.killpg(stack.pid, signal.SIGKILL)
    lines = (tmp_path / "stack.log").read_text().splitlines()
    assert any(json.loads(line).get("logger") == "gunicorn.error" for line in lines if line.startswith("{"))


@pytest.mark.parametrize("command", ["serve", "devstack"])
def test_a_port_in_use_stops_start_up_with_a_message_naming_it_before_anything_starts(tmp_path, command):
    emulator = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = manage(
            command, "--addr", f"127.0.0.1:{port}", env=stack_env(tmp_path, emulator), timeout=60
        )
    assert started.returncode != 0
    assert f"127.0.0.1:{port} is already in use (wanted by the web server)" in started.stderr
    assert "Studio" not in started.stdout  # no banner: nothing was started
    assert not answers(f"http://127.0.0.1:{emulator}/_emulator/health")


def test_an_emulator_port_in_use_is_named_too(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = manage(
            "serve", "--addr", f"127.0.0.1:{free_port()}", env=stack_env(tmp_path, port), timeout=60
        )
    assert started.returncode != 0
    assert f"127.0.0.1:{port} is already in use (wanted by the gateway emulator)" in started.stderr


@pytest.mark.parametrize("command", ["serve", "devstack"])
def test_a_web_port_that_is_the_emulators_stops_start_up_naming_both(tmp_path, command):
    port = free_port()
    started = manage(command, "--addr", f"127.0.0.1:{port}", env=stack_env(tmp_path, port), timeout=60)
    assert started.returncode != 0
    assert f"port {port} is wanted by both the web server and the gateway emulator" in started.stderr
    assert "Studio" not in started.stdout and not answers(f"http://127.0.0.1:{port}/_emulator/health")
