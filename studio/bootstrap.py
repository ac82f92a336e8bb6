"""The data directory: where it is, and the one step that creates it before Django starts.

`studio.settings` only reads; the writing happens here, in `prepare_data_dir()`, which every entry point runs
before Django needs the key: `manage.py`, `studio/wsgi.py`, `python -m studio.bench` and the test suite's
`tests/conftest.py`. It is idempotent and safe to run from several processes at once: the first process to
create the key wins and every other one reads that same key, so a web server and a worker started together on
a fresh clone share it. Pure: the standard library only, no Django.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
KEY_FILE = "secret_key"
METRICS_DIR = "metrics"


def data_dir() -> Path:
    """STUDIO_DATA_DIR, else ./var beside manage.py, as an absolute path."""
    return Path(os.environ.get("STUDIO_DATA_DIR") or BASE_DIR / "var").resolve()


def read_secret_key(data: Path) -> str:
    """The key `prepare_data_dir()` generated into `data`, or "" if it has not run there yet."""
    try:
        return (data / KEY_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


def prepare_data_dir() -> Path:
    """Create the data directory, its static-files and metrics folders and (without SECRET_KEY set) a key."""
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    # whitenoise warns about a missing STATIC_ROOT until collectstatic has run.
    (data / "staticfiles").mkdir(exist_ok=True)
    use_metrics_dir(data)
    if not os.environ.get("SECRET_KEY"):
        _create_secret_key(data / KEY_FILE)
    return data


def use_metrics_dir(data: Path) -> Path:
    """Make the directory where every process of this machine counts its metrics (studio/metrics.py), and name it
    in PROMETHEUS_MULTIPROC_DIR for this process and the ones it starts (unless that is already set), before
    prometheus_client is imported: it picks its multiprocess mode from the environment at import time."""
    folder = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data / METRICS_DIR)))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _create_secret_key(path: Path) -> None:
    """Write a new key to `path` unless one is there; the file appears whole or not at all, first writer wins."""
    if path.exists():
        return
    fd, temporary = tempfile.mkstemp(prefix=".secret_key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            os.link(temporary, path)  # fails if another process linked its key first: keep theirs
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
