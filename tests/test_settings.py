"""Settings only read; `bootstrap.prepare_data_dir()` makes the data directory and the key every process shares."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path

from studio import bootstrap

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = ROOT / "studio" / "settings.py"


def load_settings(monkeypatch, data_dir: Path, env: dict[str, str] | None = None) -> dict:
    """Execute studio/settings.py afresh, as a new process would, with only `env` set; its names as a dict."""
    for name in list(os.environ):
        if name.startswith(("STUDIO_", "BYTESPIKE_")) or name in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data_dir))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def run(*command: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a command from the project root in a fresh process, without SECRET_KEY or a settings module set."""
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**clean, "STUDIO_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the settings read, bootstrap writes ----------------------------------------------------------------------


def test_importing_the_settings_writes_nothing(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    settings = load_settings(monkeypatch, data)
    assert not data.exists()
    assert settings["DATA_DIR"] == data
    assert settings["SECRET_KEY"] == ""  # Django refuses an empty key the moment anything signs with it


def test_prepare_data_dir_makes_one_private_key_and_keeps_it(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert bootstrap.prepare_data_dir() == data
    key_file = data / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (data / "staticfiles").is_dir()
    assert bootstrap.prepare_data_dir() == data
    assert key_file.read_text() == key
    assert sorted(p.name for p in data.iterdir()) == ["secret_key", "staticfiles"]  # no temporary file left
    assert load_settings(monkeypatch, data)["SECRET_KEY"] == key


def test_a_secret_key_from_the_environment_is_used_and_nothing_is_generated(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    given = "from-the-environment"
    monkeypatch.setenv("SECRET_KEY", given)
    bootstrap.prepare_data_dir()
    assert not (data / "secret_key").exists()
    assert load_settings(monkeypatch, data, {"SECRET_KEY": given})["SECRET_KEY"] == given


def test_processes_preparing_the_same_fresh_dir_at_once_share_one_key(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    start = threading.Barrier(8)
    keys: list[str] = []

    def prepare() -> None:
        start.wait()
        bootstrap.prepare_data_dir()
        keys.append(bootstrap.read_secret_key(data))

    threads = [threading.Thread(target=prepare) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and keys[0]
    assert sorted(p.name for p in data.iterdir()) == ["secret_key", "staticfiles"]


def test_manage_py_on_a_fresh_data_dir_makes_the_key_a_second_process_reads(tmp_path):
    data = tmp_path / "fresh"
    first = run(sys.executable, "manage.py", "check", data_dir=data)
    assert first.returncode == 0, first.stderr
    key = (data / "secret_key").read_text()
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    second = run(sys.executable, "manage.py", "shell", "--no-imports", "-c", show, data_dir=data)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == key


def test_the_wsgi_entry_point_prepares_the_data_dir(tmp_path):
    data = tmp_path / "fresh"
    started = run(sys.executable, "-c", "import studio.wsgi", data_dir=data)
    assert started.returncode == 0, started.stderr
    assert (data / "secret_key").read_text()
