"""`make run`'s process manager: web server, worker and emulator come up together and Ctrl-C stops all three."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_devstack_starts_web_worker_and_emulator_and_ctrl_c_stops_them_all(tmp_path):
    web, emulator = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "BYTESPIKE_API_KEY", "BYTESPIKE_BASE_URL"}
    }
    env.update(
        STUDIO_DATA_DIR=str(tmp_path), STUDIO_EMULATOR_PORT=str(emulator), STUDIO_Q_NAME="devstack-test"
    )
    env["STUDIO_MANIFEST_STATIC"] = "0"  # no collectstatic here: plain static storage
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    stack = subprocess.Popen(
        [*manage, "devstack", "--addr", f"127.0.0.1:{web}"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{web}/login/"), timeout=60)
        wait_for(lambda: answers(f"http://127.0.0.1:{emulator}/_emulator/health"), timeout=30)
        workers = subprocess.run(
            ["pgrep", "-g", str(stack.pid), "-f", "qcluster"], capture_output=True, text=True
        )
        assert workers.stdout.split(), "the django-q2 cluster is running"

        stack.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert stack.wait(timeout=30) == 0
        wait_for(lambda: not group_alive(stack.pid), timeout=20)
        assert not answers(f"http://127.0.0.1:{web}/login/")
        assert not answers(f"http://127.0.0.1:{emulator}/_emulator/health")
    finally:
        if group_alive(stack.pid):
            os.killpg(stack.pid, signal.SIGKILL)
